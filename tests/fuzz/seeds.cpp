#include "seeds.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gguf/writer.hpp"

namespace realm::gguf::fuzz {
namespace {

std::vector<std::byte> bytes_of(size_t n, uint8_t seed) {
    std::vector<std::byte> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 13 + seed) & 0xff);
    return v;
}

// Tensor data must outlive the writer's write(): keep it in one place per seed.
struct Builder {
    Writer w;
    std::vector<std::vector<std::byte>> data;

    void tensor(const std::string& name, std::vector<uint64_t> dims, TensorType type) {
        const auto tr = type_traits(type);
        uint64_t n = 1;
        for (uint64_t d : dims) n *= d;
        data.push_back(bytes_of(n / tr->block_size * tr->type_size, static_cast<uint8_t>(data.size())));
        if (!w.add_tensor(name, std::move(dims), type, data.back())) std::abort();
    }
    std::vector<std::byte> bytes() const {
        auto r = w.write_to_memory();
        if (!r) std::abort();
        return std::move(r).value();
    }
};

}  // namespace

std::vector<std::pair<std::string, std::vector<std::byte>>> make_seeds() {
    std::vector<std::pair<std::string, std::vector<std::byte>>> out;

    {  // header only
        Builder b;
        out.emplace_back("empty.gguf", b.bytes());
    }
    {  // every value type, nested arrays, no tensors
        Builder b;
        auto& w = b.w;
        w.set("u8", uint8_t{1});
        w.set("i8", int8_t{-1});
        w.set("u16", uint16_t{2});
        w.set("i16", int16_t{-2});
        w.set("u32", uint32_t{3});
        w.set("i32", int32_t{-3});
        w.set("f32", 0.5f);
        w.set("bool", true);
        w.set("str", "text");
        w.set("u64", uint64_t{4});
        w.set("i64", int64_t{-4});
        w.set("f64", 0.25);
        w.set("arr.u8", std::vector<uint8_t>{1, 2});
        w.set("arr.i16", std::vector<int16_t>{-1, 1});
        w.set("arr.u32", std::vector<uint32_t>{1, 2, 3});
        w.set("arr.f32", std::vector<float>{1.0f, 2.0f});
        w.set("arr.bool", std::vector<bool>{true, false});
        w.set("arr.str", std::vector<std::string>{"a", "", "bc"});
        w.set("arr.u64", std::vector<uint64_t>{9});
        w.set("arr.f64", std::vector<double>{1.5});
        w.set("arr.nested", std::vector<Array>{Array(std::vector<int32_t>{1}), Array(std::vector<std::string>{"x"}),
                                               Array(std::vector<Array>{Array::empty_of(ValueType::U8)})});
        out.emplace_back("values.gguf", b.bytes());
    }
    {  // a tiny llama-like model with a vocabulary and several tensor types
        Builder b;
        auto& w = b.w;
        w.set("general.architecture", "llama");
        w.set("general.name", "seed");
        w.set("general.file_type", uint32_t{7});
        w.set("llama.block_count", uint32_t{1});
        w.set("llama.embedding_length", uint32_t{32});
        w.set("tokenizer.ggml.model", "llama");
        w.set("tokenizer.ggml.tokens", std::vector<std::string>{"<unk>", "<s>", "</s>", "a", "b"});
        w.set("tokenizer.ggml.scores", std::vector<float>{0, 0, 0, -1, -2});
        w.set("tokenizer.ggml.token_type", std::vector<int32_t>{2, 3, 3, 1, 1});
        b.tensor("token_embd.weight", {32, 5}, TensorType::Q8_0);
        b.tensor("blk.0.attn_norm.weight", {32}, TensorType::F32);
        b.tensor("blk.0.attn_q.weight", {32, 2}, TensorType::Q4_0);
        b.tensor("blk.0.ffn_up.weight", {256}, TensorType::Q4_K);
        b.tensor("output_norm.weight", {32}, TensorType::F16);
        b.tensor("pos", {4}, TensorType::I32);
        out.emplace_back("model.gguf", b.bytes());
    }
    {  // custom alignment, 3- and 4-d tensors
        Builder b;
        b.w.set("general.alignment", uint32_t{8});
        b.tensor("a", {2, 2, 2}, TensorType::F32);
        b.tensor("b", {2, 1, 1, 3}, TensorType::BF16);
        b.tensor("c", {32}, TensorType::IQ4_NL);
        out.emplace_back("align8.gguf", b.bytes());
    }
    {  // version 2 (same layout; patch the version field)
        Builder b;
        b.w.set("general.architecture", "llama");
        b.tensor("t", {8}, TensorType::F32);
        auto v = b.bytes();
        v[4] = std::byte{2};
        out.emplace_back("v2.gguf", std::move(v));
    }
    return out;
}

int write_seeds(const std::string& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
        std::fprintf(stderr, "gguf seeds: cannot create %s: %s\n", dir.c_str(), ec.message().c_str());
        return -1;
    }
    int n = 0;
    for (const auto& [name, bytes] : make_seeds()) {
        const auto path = std::filesystem::path(dir) / name;
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        if (!f) {
            std::fprintf(stderr, "gguf seeds: cannot write %s\n", path.c_str());
            return -1;
        }
        ++n;
    }
    return n;
}

}  // namespace realm::gguf::fuzz
