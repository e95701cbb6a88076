// Split models as llama.cpp's gguf-split writes them: all metadata in shard 1, and in
// every shard split.no (u16, 0-based), split.count (u16) and split.tensors.count (i32).
#include <gtest/gtest.h>

#include <cstring>

#include "gguf/reader.hpp"
#include "gguf/writer.hpp"
#include "test_util.hpp"

namespace realm::gguf {
namespace {

struct SplitModel {
    std::filesystem::path dir;
    std::string prefix;
    std::vector<std::vector<std::byte>> data;
};

std::vector<std::byte> fill(size_t n, uint8_t v) { return std::vector<std::byte>(n, std::byte{v}); }

// Writes prefix-0000K-of-0000N.gguf shards; tensors[i] lists the tensor names of shard i.
void write_split(SplitModel& m, const std::vector<std::vector<std::string>>& tensors, int tensors_count_override = -1,
                 int bad_split_no_shard = -1) {
    size_t total = 0;
    for (const auto& t : tensors) total += t.size();
    const auto n = static_cast<uint16_t>(tensors.size());
    for (uint16_t i = 0; i < n; ++i) {
        Writer w;
        if (i == 0) {
            w.set("general.architecture", "llama");
            w.set("llama.block_count", uint32_t{1});
            w.set("general.alignment", uint32_t{64});
        }
        w.set("split.no", static_cast<uint16_t>(i == bad_split_no_shard ? i + 1 : i));
        w.set("split.count", n);
        w.set("split.tensors.count", static_cast<int32_t>(tensors_count_override >= 0 ? tensors_count_override : total));
        for (const auto& name : tensors[i]) {
            m.data.push_back(fill(16 * 4, static_cast<uint8_t>(m.data.size() + 1)));
            ASSERT_TRUE(w.add_tensor(name, {16}, TensorType::F32, m.data.back()));
        }
        auto s = w.write(split_path(m.prefix, i, n));
        ASSERT_TRUE(s) << s.error().message;
    }
}

SplitModel make(const std::string& stem) {
    SplitModel m;
    m.dir = test::test_dir();
    m.prefix = (m.dir / stem).string();
    return m;
}

TEST(ggufSplit, PathFormat) {
    EXPECT_EQ(split_path("out/model", 0, 3), "out/model-00001-of-00003.gguf");
    EXPECT_EQ(split_path("m", 11, 12), "m-00012-of-00012.gguf");
}

TEST(ggufSplit, OpensAllShardsAsOne) {
    auto m = make("model");
    write_split(m, {{"a", "b"}, {"c"}});
    for (uint32_t open_idx : {0u, 1u}) {
        SCOPED_TRACE(open_idx);
        auto f = File::open(split_path(m.prefix, open_idx, 2));
        ASSERT_TRUE(f) << f.error().message;
        ASSERT_EQ(f->shards().size(), 2u);
        EXPECT_EQ(f->shards()[0].path, split_path(m.prefix, 0, 2));
        EXPECT_EQ(f->shards()[1].path, split_path(m.prefix, 1, 2));
        EXPECT_EQ(f->shards()[0].alignment, 64u);
        EXPECT_EQ(f->shards()[1].alignment, 32u);  // shards 2+ carry no general.alignment
        // Metadata comes from shard 1.
        EXPECT_EQ(f->metadata().get_string("general.architecture").value(), "llama");
        EXPECT_EQ(f->metadata().get_u32("split.no").value(), 0u);
        EXPECT_EQ(f->alignment(), 64u);
        ASSERT_EQ(f->tensors().size(), 3u);
        const char* names[] = {"a", "b", "c"};
        for (size_t i = 0; i < 3; ++i) {
            const TensorInfo* t = f->find_tensor(names[i]);
            ASSERT_NE(t, nullptr);
            EXPECT_EQ(t, &f->tensors()[i]);
            EXPECT_EQ(t->shard, i < 2 ? 0u : 1u);
            // Data points into the tensor's own shard mapping.
            const auto shard = f->shards()[t->shard].bytes;
            EXPECT_GE(t->data.data(), shard.data());
            EXPECT_LE(t->data.data() + t->data.size(), shard.data() + shard.size());
            EXPECT_EQ(std::memcmp(t->data.data(), m.data[i].data(), m.data[i].size()), 0);
        }
    }
}

TEST(ggufSplit, FirstShardWithoutTensors) {
    // gguf-split --no-tensor-first-split: shard 1 holds only metadata.
    auto m = make("meta");
    write_split(m, {{}, {"a"}, {"b", "c"}});
    auto f = File::open(split_path(m.prefix, 2, 3));
    ASSERT_TRUE(f) << f.error().message;
    EXPECT_EQ(f->tensors().size(), 3u);
    EXPECT_EQ(f->find_tensor("c")->shard, 2u);
}

TEST(ggufSplit, MissingShard) {
    auto m = make("model");
    write_split(m, {{"a"}, {"b"}, {"c"}});
    std::filesystem::remove(split_path(m.prefix, 1, 3));
    auto f = File::open(split_path(m.prefix, 0, 3));
    ASSERT_FALSE(f);
    EXPECT_NE(f.error().message.find("shard 2 of 3 is missing or invalid"), std::string::npos) << f.error().message;
    EXPECT_NE(f.error().message.find("No such file or directory"), std::string::npos) << f.error().message;
}

TEST(ggufSplit, InconsistentShards) {
    {
        auto m = make("wrongno");
        write_split(m, {{"a"}, {"b"}}, -1, /*bad_split_no_shard=*/1);
        auto f = File::open(split_path(m.prefix, 0, 2));
        ASSERT_FALSE(f);
        EXPECT_NE(f.error().message.find("expected shard split.no 1 of split.count 2, found split.no 2"), std::string::npos)
            << f.error().message;
    }
    {
        auto m = make("wrongcount");
        write_split(m, {{"a"}, {"b"}}, /*tensors_count_override=*/5);
        auto f = File::open(split_path(m.prefix, 0, 2));
        ASSERT_FALSE(f);
        EXPECT_NE(f.error().message.find("split.tensors.count is 5 but the shards hold 2 tensors"), std::string::npos)
            << f.error().message;
    }
    {
        auto m = make("dup");
        write_split(m, {{"a"}, {"a"}});
        auto f = File::open(split_path(m.prefix, 0, 2));
        ASSERT_FALSE(f);
        EXPECT_NE(f.error().message.find("tensor 'a' also appears in an earlier shard"), std::string::npos)
            << f.error().message;
    }
}

TEST(ggufSplit, ShardNameMustMatchItsMetadata) {
    auto m = make("model");
    write_split(m, {{"a"}, {"b"}});
    const auto renamed = (m.dir / "renamed.gguf").string();
    std::filesystem::rename(split_path(m.prefix, 0, 2), renamed);
    auto f = File::open(renamed);
    ASSERT_FALSE(f);
    EXPECT_NE(f.error().message.find("does not end in '-00001-of-00002.gguf'"), std::string::npos) << f.error().message;

    // open_memory reports the split keys but does not look for other shards.
    std::ifstream in(split_path(m.prefix, 1, 2), std::ios::binary);
    std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto mem = File::open_memory(std::as_bytes(std::span(raw)));
    ASSERT_TRUE(mem) << mem.error().message;
    EXPECT_EQ(mem->tensors().size(), 1u);
    EXPECT_EQ(mem->metadata().get_u32("split.no").value(), 1u);
}

TEST(ggufSplit, SingleShardCountOneIsAPlainFile) {
    auto m = make("one");
    write_split(m, {{"a"}});
    auto f = File::open(split_path(m.prefix, 0, 1));
    ASSERT_TRUE(f) << f.error().message;
    EXPECT_EQ(f->shards().size(), 1u);
}

}  // namespace
}  // namespace realm::gguf
