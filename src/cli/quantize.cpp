// `realm quantize`: rewrite a GGUF with its weight matrices in another type. Every other
// byte of metadata is kept, so the result loads wherever the input did (llama.cpp included).
#include <cstdio>
#include <string>

#include "cli/commands.hpp"
#include "cli/convert.hpp"
#include "gguf/writer.hpp"
#include "kernels/quants.hpp"

namespace realm::cli {
namespace {

Status run(const std::string& in_path, const std::string& out_path, const std::string& type_name_arg) {
    auto target = parse_quant_target(type_name_arg);
    if (!target) return target.error();
    auto in = gguf::File::open(in_path);
    if (!in) return in.error();

    const auto& md = in->metadata();
    const std::string arch(md.get_string("general.architecture", "").value());
    uint32_t n_layer = 0;
    if (auto n = md.get_u32(arch + ".block_count"); n.ok()) n_layer = *n;
    target->tied_embeddings = in->find_tensor("output.weight") == nullptr;

    gguf::Writer w;
    w.metadata() = md;
    // The output is one file: split bookkeeping of the input does not apply to it.
    for (const char* key : {"split.no", "split.count", "split.tensors.count"}) w.metadata().erase(key);
    if (auto ft = llama_file_type(*target)) {
        w.set("general.file_type", *ft);
    } else {
        w.metadata().erase("general.file_type");
    }
    w.set("general.quantization_version", uint32_t{2});

    uint64_t converted = 0, kept = 0;
    for (const auto& t : in->tensors()) {
        const TensorType dst = choose_type(*target, t.name, t.dims(), t.type, n_layer);
        std::vector<uint64_t> dims(t.dims().begin(), t.dims().end());
        Status s;
        if (dst == t.type) {
            s = w.add_tensor(t.name, dims, dst, t.data);  // unchanged bytes, straight from the map
            ++kept;
        } else {
            const auto* src_k = kernels::kernel_traits(t.type);
            if (!src_k) {
                return make_error("tensor '" + t.name + "' has type " + std::string(type_name(t.type)) +
                                  ", which realm cannot dequantize");
            }
            const uint64_t row_len = t.ne[0];
            const uint64_t rows = t.n_elements / row_len;
            auto src_row = kernels::row_size(t.type, static_cast<int64_t>(row_len));
            if (!src_row) return make_error("tensor '" + t.name + "': " + src_row.error().message);
            const size_t src_row_bytes = *src_row;
            const auto data = t.data;
            const TensorType src_type = t.type;
            s = w.add_tensor(t.name, dims, dst, [=](std::span<std::byte> out) -> Status {
                return convert_rows(dst, rows, row_len, out, [&](uint64_t r, std::span<float> values) {
                    return kernels::dequantize(src_type, data.subspan(r * src_row_bytes, src_row_bytes), values);
                });
            });
            ++converted;
        }
        if (!s) return make_error("tensor '" + t.name + "': " + s.error().message);
    }
    if (auto s = w.write(out_path); !s) return s.error();
    std::fprintf(stderr, "realm quantize: wrote %s: %llu tensors converted, %llu kept\n", out_path.c_str(),
                 static_cast<unsigned long long>(converted), static_cast<unsigned long long>(kept));
    return {};
}

}  // namespace

int quantize(const std::string& in, const std::string& out, const std::string& type) {
    if (auto s = run(in, out, type); !s) {
        std::fprintf(stderr, "realm quantize: %s\n", s.error().message.c_str());
        return 1;
    }
    return 0;
}

}  // namespace realm::cli
