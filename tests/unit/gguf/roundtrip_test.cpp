// Writer -> reader round trips: every value type, nested arrays, every tensor type,
// alignment handling, the file path (mmap + atomic rename) and writer-side validation.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "gguf/reader.hpp"
#include "gguf/writer.hpp"
#include "test_util.hpp"

namespace realm::gguf {
namespace {

std::vector<std::byte> pattern(size_t n, uint8_t seed) {
    std::vector<std::byte> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + seed) & 0xff);
    return v;
}

bool same_bytes(std::span<const std::byte> a, std::span<const std::byte> b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

Metadata every_value_type() {
    Metadata m;
    m.set("general.architecture", "llama");
    m.set("t.u8", uint8_t{200});
    m.set("t.i8", int8_t{-100});
    m.set("t.u16", uint16_t{60000});
    m.set("t.i16", int16_t{-30000});
    m.set("t.u32", uint32_t{4000000000u});
    m.set("t.i32", int32_t{-2000000000});
    m.set("t.f32", 1.5f);
    m.set("t.bool", true);
    m.set("t.bool_false", false);
    m.set("t.string", std::string("h\xc3\xa9llo\0nul", 10));  // UTF-8 and an embedded NUL
    m.set("t.string_empty", "");
    m.set("t.u64", std::numeric_limits<uint64_t>::max());
    m.set("t.i64", std::numeric_limits<int64_t>::min());
    m.set("t.f64", -2.75e300);
    m.set("a.u8", std::vector<uint8_t>{0, 1, 255});
    m.set("a.i8", std::vector<int8_t>{-128, 127});
    m.set("a.u16", std::vector<uint16_t>{1, 65535});
    m.set("a.i16", std::vector<int16_t>{-32768, 5});
    m.set("a.u32", std::vector<uint32_t>{7, 8, 9});
    m.set("a.i32", std::vector<int32_t>{-1, 0, 1});
    m.set("a.f32", std::vector<float>{0.0f, -1.25f, 3.0e38f});
    m.set("a.bool", std::vector<bool>{true, false, true, true});
    m.set("a.string", std::vector<std::string>{"<unk>", "", "\xe2\x96\x81the", "a b"});
    m.set("a.u64", std::vector<uint64_t>{std::numeric_limits<uint64_t>::max(), 0});
    m.set("a.i64", std::vector<int64_t>{std::numeric_limits<int64_t>::min(), 42});
    m.set("a.f64", std::vector<double>{1e-300, 2.5});
    m.set("a.empty_f32", Array::empty_of(ValueType::F32));
    m.set("a.empty_string", Array::empty_of(ValueType::String));
    // Nested: array of arrays of mixed element types, including deeper nesting and empties.
    m.set("a.nested", std::vector<Array>{
                          Array(std::vector<int32_t>{1, 2, 3}),
                          Array(std::vector<std::string>{"x", "yz"}),
                          Array(std::vector<Array>{Array(std::vector<bool>{false}), Array::empty_of(ValueType::U8)}),
                          Array::empty_of(ValueType::Array),
                      });
    m.set("a.nested_strings", std::vector<Array>{Array(std::vector<std::string>{"a", "b"}),
                                                 Array(std::vector<std::string>{"c"})});
    return m;
}

TEST(ggufRoundTrip, EveryValueType) {
    Writer w;
    w.metadata() = every_value_type();
    auto bytes = w.write_to_memory();
    ASSERT_TRUE(bytes) << bytes.error().message;
    auto f = File::open_memory(*bytes);
    ASSERT_TRUE(f) << f.error().message;
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->alignment(), kDefaultAlignment);
    EXPECT_TRUE(f->tensors().empty());
    EXPECT_EQ(f->metadata(), w.metadata());  // same values, same types, same order

    const Metadata& m = f->metadata();
    EXPECT_EQ(m.get_u32("t.u32").value(), 4000000000u);
    EXPECT_EQ(m.get_i64("t.i64").value(), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(m.get_string("t.string").value(), std::string_view("h\xc3\xa9llo\0nul", 10));
    const Array* nested = m.get_array("a.nested").value();
    ASSERT_EQ(nested->type(), ValueType::Array);
    const auto& outer = *nested->get_if<Array>();
    ASSERT_EQ(outer.size(), 4u);
    EXPECT_EQ(*outer[0].get_if<int32_t>(), (std::vector<int32_t>{1, 2, 3}));
    EXPECT_EQ(*outer[1].get_if<std::string>(), (std::vector<std::string>{"x", "yz"}));
    EXPECT_EQ((*outer[2].get_if<Array>())[1].type(), ValueType::U8);
    EXPECT_EQ(outer[3].type(), ValueType::Array);
    EXPECT_TRUE(outer[3].empty());

    // Writing what was read gives identical bytes.
    Writer w2;
    w2.metadata() = f->metadata();
    auto bytes2 = w2.write_to_memory();
    ASSERT_TRUE(bytes2);
    EXPECT_TRUE(same_bytes(*bytes, *bytes2));
}

TEST(ggufRoundTrip, EncodingMatchesTheSpec) {
    // One u32 key, one tensor: check the exact bytes a llama.cpp reader expects.
    Writer w;
    w.set("k", uint32_t{7});
    std::vector<std::byte> data = pattern(8, 1);
    ASSERT_TRUE(w.add_tensor("t", {2}, TensorType::F32, data));
    auto got = w.write_to_memory();
    ASSERT_TRUE(got);
    test::Bytes want;
    want.header(1, 1).str("k").u32(4).u32(7);
    want.tensor("t", {2}, 0, 0).align(32);
    want.vec().insert(want.vec().end(), data.begin(), data.end());
    want.align(32);
    EXPECT_TRUE(same_bytes(*got, want.span()));
}

TEST(ggufRoundTrip, EveryTensorType) {
    Writer w;
    w.set("general.architecture", "test");
    std::vector<std::vector<std::byte>> buffers;
    std::vector<TypeTraits> all;
    for (uint32_t id = 0; id < 64; ++id) {
        if (auto tr = type_traits(id)) all.push_back(*tr);
    }
    ASSERT_GE(all.size(), 35u);
    for (size_t i = 0; i < all.size(); ++i) {
        const auto& tr = all[i];
        const std::vector<uint64_t> dims = {uint64_t{tr.block_size} * 2, 3, (i % 3) + 1};
        buffers.push_back(pattern(size_t{tr.type_size} * 2 * 3 * ((i % 3) + 1), static_cast<uint8_t>(i)));
        auto s = w.add_tensor("t." + std::string(tr.name), dims, tr.type, buffers.back());
        ASSERT_TRUE(s) << s.error().message;
    }
    auto bytes = w.write_to_memory();
    ASSERT_TRUE(bytes);
    auto f = File::open_memory(*bytes);
    ASSERT_TRUE(f) << f.error().message;
    ASSERT_EQ(f->tensors().size(), all.size());
    for (size_t i = 0; i < all.size(); ++i) {
        const TensorInfo& t = f->tensors()[i];
        SCOPED_TRACE(t.name);
        EXPECT_EQ(t.name, "t." + std::string(all[i].name));
        EXPECT_EQ(t.type, all[i].type);
        EXPECT_EQ(t.n_dims, 3u);
        EXPECT_EQ(t.ne[0], uint64_t{all[i].block_size} * 2);
        EXPECT_EQ(t.ne[1], 3u);
        EXPECT_EQ(t.ne[3], 1u);
        EXPECT_EQ(t.n_elements, t.ne[0] * t.ne[1] * t.ne[2]);
        EXPECT_EQ(t.n_bytes, buffers[i].size());
        EXPECT_EQ(t.offset % 32, 0u);
        EXPECT_EQ(t.file_offset % 32, 0u);
        EXPECT_EQ(t.file_offset, f->shards()[0].data_offset + t.offset);
        EXPECT_TRUE(same_bytes(t.data, buffers[i]));
        EXPECT_EQ(f->find_tensor(t.name), &t);
    }
    EXPECT_EQ(f->find_tensor("missing"), nullptr);
}

TEST(ggufRoundTrip, CustomAlignment) {
    for (uint32_t align : {1u, 8u, 64u, 4096u}) {
        SCOPED_TRACE(align);
        Writer w;
        w.set("general.alignment", align);
        auto a = pattern(12, 1);
        auto b = pattern(20, 2);
        ASSERT_TRUE(w.add_tensor("a", {3}, TensorType::F32, a));
        ASSERT_TRUE(w.add_tensor("b", {10}, TensorType::F16, b));
        auto bytes = w.write_to_memory();
        ASSERT_TRUE(bytes);
        EXPECT_EQ(bytes->size() % align, 0u);
        auto f = File::open_memory(*bytes);
        ASSERT_TRUE(f) << f.error().message;
        EXPECT_EQ(f->alignment(), align);
        EXPECT_EQ(f->shards()[0].data_offset % align, 0u);
        EXPECT_EQ(f->tensors()[1].offset, (12 + align - 1) / align * align);
        EXPECT_TRUE(same_bytes(f->tensors()[0].data, a));
        EXPECT_TRUE(same_bytes(f->tensors()[1].data, b));
    }
}

TEST(ggufRoundTrip, ProducerTensors) {
    Writer w;
    int calls = 0;
    ASSERT_TRUE(w.add_tensor("p", {32, 2}, TensorType::Q8_0, [&](std::span<std::byte> out) -> Status {
        ++calls;
        EXPECT_EQ(out.size(), 68u);
        for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>(i);
        return {};
    }));
    auto bytes = w.write_to_memory();
    ASSERT_TRUE(bytes);
    EXPECT_EQ(calls, 1);
    auto f = File::open_memory(*bytes);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->tensors()[0].data[67], std::byte{67});

    Writer bad;
    ASSERT_TRUE(bad.add_tensor("p", {4}, TensorType::F32, [](std::span<std::byte>) -> Status {
        return make_error("quantizer exploded");
    }));
    auto r = bad.write_to_memory();
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("quantizer exploded"), std::string::npos);
}

TEST(ggufRoundTrip, FileWriteIsAtomicAndReadable) {
    const auto dir = test::test_dir();
    const auto path = (dir / "model.gguf").string();
    Writer w;
    w.metadata() = every_value_type();
    auto data = pattern(64 * 4 * 3, 5);
    ASSERT_TRUE(w.add_tensor("blk.0.attn_q.weight", {64, 3}, TensorType::F32, data));
    auto big = pattern(4 * 12288, 9);  // spans whole pages
    ASSERT_TRUE(w.add_tensor("big", {12288}, TensorType::F32, big));
    ASSERT_TRUE(w.write(path));
    // Only the final file is left: the temporary was renamed.
    size_t n_files = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n_files;
    EXPECT_EQ(n_files, 1u);

    auto f = File::open(path);
    ASSERT_TRUE(f) << f.error().message;
    EXPECT_EQ(f->metadata(), w.metadata());
    ASSERT_EQ(f->shards().size(), 1u);
    EXPECT_EQ(f->shards()[0].path, path);
    const TensorInfo* t = f->find_tensor("blk.0.attn_q.weight");
    ASSERT_NE(t, nullptr);
    EXPECT_TRUE(same_bytes(t->data, data));
    // mmap'd data honours the alignment in memory too.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data.data()) % 32, 0u);

    // Releasing a tensor's pages keeps its bytes readable (mapped in again from the file), and
    // spans outside the mapping are ignored.
    f->release_pages(t->data);
    EXPECT_TRUE(same_bytes(t->data, data));
    f->release_pages(f->find_tensor("big")->data);
    EXPECT_TRUE(same_bytes(f->find_tensor("big")->data, big));
    f->release_pages(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size()));

    // Moving the File keeps tensor spans valid (they point into the mapping).
    File moved = std::move(*f);
    EXPECT_TRUE(same_bytes(moved.find_tensor("blk.0.attn_q.weight")->data, data));

    // Overwriting an existing file works; a write into a missing directory fails cleanly.
    ASSERT_TRUE(w.write(path));
    auto s = w.write((dir / "no" / "such" / "dir.gguf").string());
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().message.find("temporary file"), std::string::npos);
}

TEST(ggufRoundTrip, FilesLargerThan4GiB) {
    // A sparse 5 GiB file (no disk space used): a 4 GiB + 64 byte tensor followed by one
    // whose data lies entirely past 2^32, so every offset and size needs 64 bits.
    const uint64_t big_ne = (uint64_t{1} << 30) + 16;  // f32 elements: 4 GiB + 64 bytes
    const uint64_t big_bytes = big_ne * 4;
    test::Bytes b;
    b.header(2, 0).tensor("big", {big_ne}, 0, 0).tensor("tail", {8}, 0, big_bytes).align(32);
    const uint64_t data_offset = b.size();
    const uint64_t file_size = data_offset + big_bytes + 32;
    const auto path = test::test_dir() / "big.gguf";
    test::write_bytes(path, b.span());
    std::error_code ec;
    std::filesystem::resize_file(path, file_size, ec);
    if (ec) GTEST_SKIP() << "cannot create a sparse 5 GiB file: " << ec.message();

    auto f = File::open(path.string());
    ASSERT_TRUE(f) << f.error().message;
    const TensorInfo* big = f->find_tensor("big");
    const TensorInfo* tail = f->find_tensor("tail");
    ASSERT_NE(big, nullptr);
    ASSERT_NE(tail, nullptr);
    EXPECT_EQ(big->n_bytes, big_bytes);
    EXPECT_EQ(big->data.size(), big_bytes);
    EXPECT_EQ(tail->file_offset, data_offset + big_bytes);
    EXPECT_GT(tail->file_offset, uint64_t{1} << 32);
    EXPECT_EQ(f->shards()[0].size, file_size);
    EXPECT_EQ(big->data.back(), std::byte{0});  // last byte, past 4 GiB, is readable
    EXPECT_EQ(tail->data.back(), std::byte{0});

    // One byte short: the tail tensor no longer fits.
    std::filesystem::resize_file(path, file_size - 1);
    auto cut = File::open(path.string());
    ASSERT_FALSE(cut);
    const std::string want = "tensor 'tail': data [offset 4294967360 (file offset " +
                             std::to_string(data_offset + big_bytes) + "), size 32] extends past end of file (size " +
                             std::to_string(file_size - 1) + ")";
    EXPECT_NE(cut.error().message.find(want), std::string::npos)
        << cut.error().message;
}

TEST(ggufRoundTrip, QuantizeStyleMetadataCopy) {
    // What `realm quantize` does: copy all metadata, change general.file_type, new tensor types.
    Writer src;
    src.metadata() = every_value_type();
    src.set("general.file_type", uint32_t{0});
    auto f32 = pattern(32 * 4, 3);
    ASSERT_TRUE(src.add_tensor("w", {32}, TensorType::F32, f32));
    auto in_bytes = src.write_to_memory();
    ASSERT_TRUE(in_bytes);
    auto in = File::open_memory(*in_bytes);
    ASSERT_TRUE(in);

    Writer out;
    out.metadata() = in->metadata();
    out.set("general.file_type", uint32_t{7});
    auto q = pattern(34, 4);
    ASSERT_TRUE(out.add_tensor(in->tensors()[0].name, {in->tensors()[0].dims().begin(), in->tensors()[0].dims().end()},
                               TensorType::Q8_0, q));
    auto out_bytes = out.write_to_memory();
    ASSERT_TRUE(out_bytes);
    auto back = File::open_memory(*out_bytes);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->metadata().get_u32("general.file_type").value(), 7u);
    EXPECT_EQ(back->metadata().size(), in->metadata().size());
    EXPECT_EQ(back->metadata().entries().back().key, "general.file_type");  // position kept
    EXPECT_EQ(back->tensors()[0].type, TensorType::Q8_0);
}

TEST(ggufWriter, RejectsInvalidTensors) {
    Writer w;
    auto d = pattern(16, 0);
    ASSERT_TRUE(w.add_tensor("a", {4}, TensorType::F32, d));

    auto expect_error = [](const Status& s, std::string_view needle) {
        ASSERT_FALSE(s);
        EXPECT_NE(s.error().message.find(needle), std::string::npos) << s.error().message;
    };
    expect_error(w.add_tensor("a", {4}, TensorType::F32, d), "duplicate tensor name");
    expect_error(w.add_tensor("", {4}, TensorType::F32, d), "name is empty");
    expect_error(w.add_tensor(std::string(64, 'x'), {4}, TensorType::F32, d), "at most 63");
    expect_error(w.add_tensor("b", {}, TensorType::F32, d), "0 dimensions");
    expect_error(w.add_tensor("b", {1, 1, 1, 1, 4}, TensorType::F32, d), "5 dimensions");
    expect_error(w.add_tensor("b", {5}, TensorType::F32, d), "data is 16 bytes");
    expect_error(w.add_tensor("b", {16}, TensorType::Q4_0, d), "not a multiple of the q4_0 block size 32");
    expect_error(w.add_tensor("b", {uint64_t{1} << 40, uint64_t{1} << 40}, TensorType::F32, d), "overflows");
    expect_error(w.add_tensor("b", {4}, static_cast<TensorType>(4), d), "unknown tensor type id 4");
    EXPECT_TRUE(w.add_tensor(std::string(63, 'x'), {4}, TensorType::F32, d));
    EXPECT_EQ(w.tensor_count(), 2u);
}

TEST(ggufWriter, RejectsBadAlignment) {
    Writer w;
    w.set("general.alignment", int32_t{32});  // llama.cpp requires u32
    auto r = w.write_to_memory();
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("must be a u32"), std::string::npos);
    w.set("general.alignment", uint32_t{48});
    r = w.write_to_memory();
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("not a nonzero power of two"), std::string::npos);
}

}  // namespace
}  // namespace realm::gguf
