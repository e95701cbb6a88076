// Real files from REALM_SHARED_DIR: a tiny llama model and vocab-only files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "gguf/reader.hpp"
#include "gguf/writer.hpp"
#include "test_util.hpp"

namespace realm::gguf {
namespace {

std::filesystem::path shared_or_skip(const std::string& rel) {
    const auto dir = test::shared_dir();
    if (dir.empty() || !std::filesystem::exists(dir / rel)) return {};
    return dir / rel;
}

TEST(ggufShared, Stories260K) {
    const auto path = shared_or_skip("models/stories260K.gguf");
    if (path.empty()) GTEST_SKIP() << "REALM_SHARED_DIR/models/stories260K.gguf not available";
    auto f = File::open(path.string());
    ASSERT_TRUE(f) << f.error().message;
    const Metadata& m = f->metadata();
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(m.get_string("general.architecture").value(), "llama");
    EXPECT_EQ(m.get_u32("llama.block_count").value(), 5u);
    EXPECT_EQ(m.get_u32("llama.embedding_length").value(), 64u);
    EXPECT_EQ(m.get_u32("llama.attention.head_count").value(), 8u);
    EXPECT_EQ(m.get_u32("llama.attention.head_count_kv").value(), 4u);
    EXPECT_EQ(m.get_u32("llama.context_length").value(), 2048u);
    EXPECT_EQ(m.get_u32("llama.feed_forward_length").value(), 172u);
    EXPECT_NEAR(m.get_f32("llama.attention.layer_norm_rms_epsilon").value(), 1e-5f, 1e-9f);
    EXPECT_EQ(m.get_string("tokenizer.ggml.model").value(), "llama");
    const Array* tokens = m.get_array("tokenizer.ggml.tokens").value();
    ASSERT_NE(tokens->get_if<std::string>(), nullptr);
    EXPECT_EQ(tokens->size(), 512u);
    EXPECT_EQ((*tokens->get_if<std::string>())[1], "<s>");
    EXPECT_EQ(m.get_array("tokenizer.ggml.scores").value()->get_if<float>()->size(), 512u);
    EXPECT_EQ(m.get_array("tokenizer.ggml.token_type").value()->size(), 512u);
    EXPECT_EQ(m.get_u32("tokenizer.ggml.bos_token_id").value(), 1u);

    EXPECT_EQ(f->tensors().size(), 3u + 5u * 9u);
    const TensorInfo* emb = f->find_tensor("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->type, TensorType::F32);
    EXPECT_EQ(emb->n_dims, 2u);
    EXPECT_EQ(emb->ne[0], 64u);
    EXPECT_EQ(emb->ne[1], 512u);
    EXPECT_EQ(emb->n_bytes, 64u * 512u * 4u);
    const TensorInfo* down = f->find_tensor("blk.4.ffn_down.weight");
    ASSERT_NE(down, nullptr);
    EXPECT_EQ(down->ne[0], 172u);
    EXPECT_EQ(down->ne[1], 64u);
    // Tensors tile the data section up to the end of the file.
    uint64_t end = 0;
    for (const auto& t : f->tensors()) end = std::max(end, t.file_offset + t.n_bytes);
    EXPECT_LE(end, f->shards()[0].size);
    EXPECT_GT(end + 32, f->shards()[0].size);
    // Norm weights are finite floats.
    const TensorInfo* norm = f->find_tensor("output_norm.weight");
    ASSERT_NE(norm, nullptr);
    float first = 0;
    std::memcpy(&first, norm->data.data(), sizeof first);
    EXPECT_TRUE(std::isfinite(first));
}

TEST(ggufShared, Stories260KRewritesIdentically) {
    // Copying every key and tensor through the writer reproduces the file byte for byte
    // (it was written by llama.cpp's writer, which uses the same layout).
    const auto path = shared_or_skip("models/stories260K.gguf");
    if (path.empty()) GTEST_SKIP() << "stories260K.gguf not available";
    auto f = File::open(path.string());
    ASSERT_TRUE(f) << f.error().message;
    Writer w;
    w.metadata() = f->metadata();
    for (const auto& t : f->tensors()) {
        auto s = w.add_tensor(t.name, {t.dims().begin(), t.dims().end()}, t.type, t.data);
        ASSERT_TRUE(s) << s.error().message;
    }
    auto out = w.write_to_memory();
    ASSERT_TRUE(out) << out.error().message;
    const auto in = f->shards()[0].bytes;
    ASSERT_EQ(out->size(), in.size());
    EXPECT_EQ(std::memcmp(out->data(), in.data(), in.size()), 0);
}

TEST(ggufShared, VocabFiles) {
    const auto dir = shared_or_skip("vocab");
    if (dir.empty()) GTEST_SKIP() << "REALM_SHARED_DIR/vocab not available";
    size_t n_files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        if (e.path().extension() != ".gguf") continue;
        SCOPED_TRACE(e.path().string());
        ++n_files;
        auto f = File::open(e.path().string());
        ASSERT_TRUE(f) << f.error().message;
        EXPECT_TRUE(f->tensors().empty());
        const Metadata& m = f->metadata();
        EXPECT_TRUE(m.get_string("general.architecture"));
        auto tokens = m.get_array("tokenizer.ggml.tokens");
        ASSERT_TRUE(tokens) << tokens.error().message;
        ASSERT_NE((*tokens)->get_if<std::string>(), nullptr);
        EXPECT_GT((*tokens)->size(), 1000u);
        if (m.contains("tokenizer.ggml.merges")) {
            const auto* merges = m.get_array("tokenizer.ggml.merges").value()->get_if<std::string>();
            ASSERT_NE(merges, nullptr);
            EXPECT_FALSE(merges->empty());
            EXPECT_NE(merges->front().find(' '), std::string::npos);
        }
    }
    EXPECT_GE(n_files, 12u);

    // Spot checks on two tokenizers.
    auto gpt2 = File::open((dir / "ggml-vocab-gpt-2.gguf").string());
    ASSERT_TRUE(gpt2);
    EXPECT_EQ(gpt2->metadata().get_string("tokenizer.ggml.model").value(), "gpt2");
    auto spm = File::open((dir / "ggml-vocab-llama-spm.gguf").string());
    ASSERT_TRUE(spm);
    EXPECT_EQ(spm->metadata().get_array("tokenizer.ggml.tokens").value()->size(), 32000u);
    EXPECT_EQ(spm->metadata().get_array("tokenizer.ggml.scores").value()->type(), ValueType::F32);
}

}  // namespace
}  // namespace realm::gguf
