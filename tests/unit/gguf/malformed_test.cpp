// Malformed input: each case must come back as an Error with a useful message,
// never a crash (the suite runs under ASan + UBSan).
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

#include "gguf/reader.hpp"
#include "gguf/writer.hpp"
#include "test_util.hpp"

namespace realm::gguf {
namespace {

using test::Bytes;
constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

// Returns the error message, failing the test if parsing succeeded.
std::string error_of(std::span<const std::byte> bytes) {
    auto f = File::open_memory(bytes);
    if (f) {
        ADD_FAILURE() << "parse unexpectedly succeeded";
        return {};
    }
    EXPECT_EQ(f.error().message.rfind("gguf: ", 0), 0u) << f.error().message;
    return f.error().message;
}

#define EXPECT_GGUF_ERROR(bytes, needle)                                                              \
    do {                                                                                              \
        const std::string msg_ = error_of(bytes);                                                     \
        EXPECT_NE(msg_.find(needle), std::string::npos) << "message: " << msg_ << "\nwanted: " << (needle); \
    } while (0)

// A small valid file exercising strings, arrays, nested arrays and two tensors.
std::vector<std::byte> small_valid_file() {
    Writer w;
    w.set("general.architecture", "llama");
    w.set("llama.block_count", uint32_t{2});
    w.set("tokenizer.ggml.tokens", std::vector<std::string>{"<s>", "a", "bc"});
    w.set("tokenizer.ggml.scores", std::vector<float>{0.0f, -1.0f, -2.0f});
    w.set("x.nested", std::vector<Array>{Array(std::vector<std::string>{"p", "q"}), Array(std::vector<bool>{true})});
    w.set("x.flag", true);
    static const std::vector<std::byte> a(4 * 4 * 2, std::byte{1});
    static const std::vector<std::byte> b(34, std::byte{2});
    EXPECT_TRUE(w.add_tensor("a", {4, 2}, TensorType::F32, a));
    EXPECT_TRUE(w.add_tensor("b", {32}, TensorType::Q8_0, b));
    auto bytes = w.write_to_memory();
    EXPECT_TRUE(bytes);
    return std::move(bytes).value();
}

TEST(ggufMalformed, EveryTruncationIsAnError) {
    const auto full = small_valid_file();
    auto f = File::open_memory(full);
    ASSERT_TRUE(f) << f.error().message;
    uint64_t data_end = 0;
    for (const auto& t : f->tensors()) data_end = std::max(data_end, t.file_offset + t.n_bytes);
    ASSERT_LT(data_end, full.size());  // the last tensor is followed by padding

    for (size_t n = 0; n < full.size(); ++n) {
        SCOPED_TRACE(n);
        // A fresh heap copy of exactly n bytes so that ASan catches any read past the end.
        std::vector<std::byte> prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
        auto r = File::open_memory(prefix);
        if (n < data_end) {
            ASSERT_FALSE(r);
            EXPECT_EQ(r.error().message.rfind("gguf: ", 0), 0u);
        } else {
            EXPECT_TRUE(r);  // only trailing padding was cut
        }
    }
    EXPECT_GGUF_ERROR(std::span<const std::byte>(), "magic needs 4 bytes but only 0 remain");
}

TEST(ggufMalformed, TruncatedFilesOnDisk) {
    const auto full = small_valid_file();
    const auto dir = test::test_dir();
    for (size_t n : {size_t{0}, size_t{3}, size_t{20}, full.size() / 2, full.size() - 40}) {
        const auto p = dir / ("t" + std::to_string(n) + ".gguf");
        test::write_bytes(p, std::span(full).first(n));
        auto r = File::open(p.string());
        ASSERT_FALSE(r) << n;
        EXPECT_NE(r.error().message.find(p.string()), std::string::npos) << r.error().message;
    }
}

TEST(ggufMalformed, BitFlipsNeverCrash) {
    // A deterministic mini-fuzz: every byte of a valid file replaced by a few values.
    const auto full = small_valid_file();
    size_t ok = 0;
    for (size_t i = 0; i < full.size(); ++i) {
        for (uint8_t v : {uint8_t{0x00}, uint8_t{0xff}, uint8_t{0x80}, uint8_t{0x07}}) {
            auto copy = full;
            copy[i] = static_cast<std::byte>(v);
            auto r = File::open_memory(copy);
            if (r) {
                ++ok;
                for (const auto& t : r->tensors()) {
                    if (!t.data.empty()) {
                        volatile std::byte first = t.data.front();
                        volatile std::byte last = t.data.back();
                        (void)first;
                        (void)last;
                    }
                }
            } else {
                EXPECT_FALSE(r.error().message.empty());
            }
        }
    }
    EXPECT_GT(ok, 0u);
}

TEST(ggufMalformed, BadMagic) {
    Bytes b;
    b.u32(0x58554747).u32(3).u64(0).u64(0);  // "GGUX"
    EXPECT_GGUF_ERROR(b.span(), "bad magic 'GGUX'");
}

TEST(ggufMalformed, UnsupportedVersions) {
    EXPECT_GGUF_ERROR(Bytes().header(0, 0, 1).span(), "GGUF version 1 is not supported (only versions 2 and 3)");
    EXPECT_GGUF_ERROR(Bytes().header(0, 0, 0).span(), "unsupported GGUF version 0");
    EXPECT_GGUF_ERROR(Bytes().header(0, 0, 4).span(), "unsupported GGUF version 4");
    EXPECT_GGUF_ERROR(Bytes().header(0, 0, 0x03000000).span(), "byte-swapped");
    // Version 2 has the same layout as 3.
    auto v2 = File::open_memory(Bytes().header(0, 1, 2).str("k").u32(4).u32(1).span());
    ASSERT_TRUE(v2) << v2.error().message;
    EXPECT_EQ(v2->version(), 2u);
}

TEST(ggufMalformed, AbsurdCounts) {
    EXPECT_GGUF_ERROR(Bytes().header(0, uint64_t{1} << 62).span(), "metadata key/value count 4611686018427387904 is absurd");
    EXPECT_GGUF_ERROR(Bytes().header(kU64Max, 0).span(), "tensor count 18446744073709551615 is absurd");
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).span(), "is absurd");  // one kv, zero bytes left
    // Array length that the rest of the file cannot hold.
    Bytes arr;
    arr.header(0, 1).str("k").u32(9).u32(4).u64(uint64_t{1} << 61).u32(1);
    EXPECT_GGUF_ERROR(arr.span(), "metadata key #0 'k' at byte 41: array length 2305843009213693952 of u32 needs at least");
    Bytes arr2;
    arr2.header(0, 1).str("k").u32(9).u32(8).u64(kU64Max).zeros(64);
    EXPECT_GGUF_ERROR(arr2.span(), "array length 18446744073709551615 of string needs at least 2^64 bytes");
}

TEST(ggufMalformed, StringLengthPastEnd) {
    Bytes key;
    key.header(0, 1).u64(kU64Max).zeros(20);
    EXPECT_GGUF_ERROR(key.span(), "gguf: metadata key #0 at byte 24: key length 18446744073709551615 exceeds remaining 20 bytes");
    Bytes val;
    val.header(0, 1).str("name").u32(8).u64(1000).zeros(10);
    EXPECT_GGUF_ERROR(val.span(), "metadata key #0 'name' at byte 40: string length 1000 exceeds remaining 10 bytes");
    Bytes elem;
    elem.header(0, 1).str("toks").u32(9).u32(8).u64(2).str("ok").u64(500).zeros(8);
    EXPECT_GGUF_ERROR(elem.span(), "string length 500 exceeds remaining 8 bytes (array element 1 of 2)");
    Bytes name;
    name.header(1, 0).u64(1u << 20).zeros(40);
    EXPECT_GGUF_ERROR(name.span(), "tensor #0 at byte 24: name length 1048576 exceeds remaining 40 bytes");
}

TEST(ggufMalformed, EmptyAndDuplicateKeys) {
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("").u32(0).u8(1).zeros(8).span(), "metadata key #0 at byte 24: empty key");
    Bytes dup;
    dup.header(0, 2).str("k").u32(0).u8(1).str("k").u32(0).u8(2);
    EXPECT_GGUF_ERROR(dup.span(), "metadata key #1 'k' at byte 38: duplicate key");
}

TEST(ggufMalformed, UnknownValueTypes) {
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("k").u32(13).zeros(8).span(), "metadata key #0 'k' at byte 33: unknown value type 13");
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("k").u32(0xffffffff).zeros(8).span(), "unknown value type 4294967295");
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("k").u32(9).u32(77).u64(0).span(), "unknown array element type 77");
    // Key names from the file are escaped in messages.
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("a\nb").u32(13).zeros(8).span(), "'a\\x0ab'");
}

TEST(ggufMalformed, DeeplyNestedArrays) {
    Bytes b;
    b.header(0, 1).str("deep").u32(9);
    for (int i = 0; i < 200; ++i) b.u32(9).u64(1);
    b.u32(0).u64(0);
    EXPECT_GGUF_ERROR(b.span(), "arrays nested deeper than 64 levels");
}

TEST(ggufMalformed, BadAlignment) {
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("general.alignment").u32(4).u32(0).span(), "alignment 0 is not a nonzero power of two");
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("general.alignment").u32(4).u32(48).span(), "alignment 48 is not");
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("general.alignment").u32(8).str("32").span(), "'general.alignment': must be a u32");
    EXPECT_GGUF_ERROR(Bytes().header(0, 1).str("general.alignment").u32(5).i32(-32).span(), "must be a u32");
    // Any integer type that fits is accepted.
    auto ok = File::open_memory(Bytes().header(0, 1).str("general.alignment").u32(10).u64(64).span());
    ASSERT_TRUE(ok) << ok.error().message;
    EXPECT_EQ(ok->alignment(), 64u);
}

// Header for a file with `n` tensors and no metadata; tensor infos follow.
Bytes tensors_header(uint64_t n) { return std::move(Bytes().header(n, 0)); }

TEST(ggufMalformed, TensorDims) {
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {1, 1, 1, 1, 1}, 0, 0).align(32).zeros(32).span(),
                      "tensor #0 't' at byte 33: n_dims 5 is not in 1..4");
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {}, 0, 0).zeros(64).span(), "n_dims 0 is not in 1..4");
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0).zeros(64).span(),
                      "element count of shape [4294967296, 4294967296] overflows int64");
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {uint64_t{1} << 62, 2}, 0, 0).zeros(64).span(), "overflows int64");
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {4, static_cast<uint64_t>(-3)}, 0, 0).zeros(64).span(),
                      "dimension 1 is negative (-3)");
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {33}, 2, 0).zeros(64).span(),
                      "first dimension 33 is not a multiple of the q4_0 block size 32");
    // Byte size overflow with an in-range element count: 2^62 elements of f64.
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {uint64_t{1} << 62}, 28, 0).zeros(64).span(),
                      "byte size of shape [4611686018427387904] as f64 overflows 64 bits");
    // In range but far larger than the file.
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {uint64_t{1} << 62}, 15, 0).zeros(64).span(),
                      "size 5260204364768739328] extends past end of file");
}

TEST(ggufMalformed, UnknownTensorType) {
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {4}, 4, 0).zeros(64).span(), "tensor #0 't' at byte 45: unknown tensor type id 4");
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {4}, 1000, 0).zeros(64).span(), "unknown tensor type id 1000");
}

TEST(ggufMalformed, DuplicateTensorNames) {
    EXPECT_GGUF_ERROR(tensors_header(2).tensor("w", {8}, 0, 0).tensor("w", {8}, 0, 32).align(32).zeros(64).span(),
                      "tensor #1 'w' at byte 57: duplicate tensor name (first used by tensor #0)");
}

TEST(ggufMalformed, TensorDataPastEnd) {
    Bytes b = tensors_header(1);
    b.tensor("blk.0.attn_q.weight", {64, 64}, 0, 0).align(32).zeros(400);
    const std::string msg = error_of(b.span());
    EXPECT_NE(msg.find("gguf: tensor 'blk.0.attn_q.weight': data [offset 0 (file offset 96), size 16384] extends "
                       "past end of file (size 496)"),
              std::string::npos)
        << msg;
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {8}, 0, 1024).align(32).zeros(64).span(),
                      "data [offset 1024 (file offset 1088), size 32] extends past end of file (size 128)");
    // An offset so large that data_offset + offset wraps around.
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {8}, 0, kU64Max - 31).align(32).zeros(64).span(),
                      "(file offset overflow)");
    // The data section itself must start inside the file.
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {0}, 0, 0).span(), "data section starts at byte 64");
}

TEST(ggufMalformed, UnalignedTensorOffset) {
    EXPECT_GGUF_ERROR(tensors_header(1).tensor("t", {8}, 0, 4).align(32).zeros(64).span(),
                      "tensor 't': data offset 4 is not a multiple of the alignment 32");
}

TEST(ggufMalformed, OverlappingTensors) {
    EXPECT_GGUF_ERROR(tensors_header(2).tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 0).align(32).zeros(64).span(),
                      "overlaps tensor");
    // b (bytes 32..96) starts inside a (bytes 0..64), listed in reverse order.
    EXPECT_GGUF_ERROR(tensors_header(2).tensor("b", {16}, 0, 32).tensor("a", {16}, 0, 0).align(32).zeros(128).span(),
                      "tensor 'b' data [offset 32, size 64] overlaps tensor 'a' data [offset 0, size 64]");
    // Zero-size tensors may share an offset; adjacent ranges are fine.
    const Bytes bytes =
        tensors_header(3).tensor("a", {8}, 0, 0).tensor("z", {0, 5}, 0, 0).tensor("b", {8}, 0, 32).align(32).zeros(64);
    auto ok = File::open_memory(bytes.span());
    ASSERT_TRUE(ok) << ok.error().message;
    EXPECT_EQ(ok->find_tensor("z")->n_bytes, 0u);
    EXPECT_TRUE(ok->find_tensor("z")->data.empty());
}

TEST(ggufMalformed, FileErrors) {
    auto missing = File::open("/nonexistent/dir/model.gguf");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().message, "gguf: cannot open '/nonexistent/dir/model.gguf': No such file or directory");
    const auto dir = test::test_dir();
    auto d = File::open(dir.string());
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message.find("is not a regular file"), std::string::npos);
    const auto empty = dir / "empty.gguf";
    test::write_bytes(empty, {});
    auto e = File::open(empty.string());
    ASSERT_FALSE(e);
    EXPECT_NE(e.error().message.find("magic needs 4 bytes but only 0 remain"), std::string::npos) << e.error().message;
}

}  // namespace
}  // namespace realm::gguf
