// engine::Batcher on the real stories260K model: many threads generating at once get exactly the
// tokens they get alone, their steps are shared, and cancellation/shutdown/bad input are errors.
#include "engine/batcher.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace realm::engine {
namespace {

std::string stories_path() {
    if (const char* p = std::getenv("REALM_STORIES"); p && *p) return p;
    if (const char* d = std::getenv("REALM_SHARED_DIR"); d && *d) return std::string(d) + "/models/stories260K.gguf";
    return "";
}

std::unique_ptr<model::Model> load_stories() {
    const std::string path = stories_path();
    if (path.empty() || !std::filesystem::is_regular_file(path)) return nullptr;
    auto m = model::Model::open(path, {.n_threads = 2});
    EXPECT_TRUE(m.ok()) << m.error().message;
    return m ? std::move(*m) : nullptr;
}

// Greedy continuation of `prompt` for n tokens; feed() either runs the model directly or through a batcher.
template <typename Feed>
std::vector<int32_t> greedy(const model::Model& m, const std::vector<int32_t>& prompt, int n, Feed feed) {
    auto seq = m.new_sequence(256);
    EXPECT_TRUE(seq.ok());
    std::vector<int32_t> out;
    if (!seq) return out;
    if (!feed(*seq, std::span<const int32_t>(prompt))) return out;
    for (int i = 0; i < n; ++i) {
        const int32_t t = model::argmax(seq->logits());
        out.push_back(t);
        if (!feed(*seq, std::span<const int32_t>(&t, 1))) break;
    }
    return out;
}

std::vector<int32_t> prompt_for(int i) {
    std::vector<int32_t> p = {1};
    for (int k = 0; k < 3 + 7 * i; ++k) p.push_back(20 + (i * 37 + k * 11) % 400);
    return p;
}

TEST(Batcher, ConcurrentEqualsAlone) {
    auto m = load_stories();
    if (!m) GTEST_SKIP() << "stories260K.gguf not found (REALM_STORIES / REALM_SHARED_DIR)";
    constexpr int kThreads = 8, kTokens = 24;
    std::vector<std::vector<int32_t>> alone(kThreads), together(kThreads);
    for (int i = 0; i < kThreads; ++i) {
        alone[i] = greedy(*m, prompt_for(i), kTokens,
                          [&](model::Sequence& s, std::span<const int32_t> t) { return m->forward(s, t).ok(); });
        ASSERT_EQ(alone[i].size(), size_t{kTokens});
    }
    Batcher b(*m, {.max_batch_tokens = 32, .prefill_chunk = 8});
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&, i] {
            together[i] = greedy(*m, prompt_for(i), kTokens, [&](model::Sequence& s, std::span<const int32_t> t) {
                auto st = b.feed(s, t);
                EXPECT_TRUE(st.ok()) << st.error().message;
                return st.ok();
            });
        });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) EXPECT_EQ(together[i], alone[i]) << "thread " << i;
    const BatcherStats st = b.stats();
    EXPECT_EQ(st.waiting, 0u);
    EXPECT_GT(st.batched_steps, 0u) << "no step served two sequences";
    EXPECT_GT(st.max_sequences_in_step, 1u);
    // Prompts longer than the chunk were split: more steps than a feed each would need... and every token counted.
    size_t total = 0;
    for (int i = 0; i < kThreads; ++i) total += prompt_for(i).size() + kTokens;
    EXPECT_EQ(st.tokens, total);
}

TEST(Batcher, ChunkedPromptEqualsWholePrompt) {
    auto m = load_stories();
    if (!m) GTEST_SKIP() << "stories260K.gguf not found";
    const std::vector<int32_t> p = prompt_for(9);
    auto a = m->new_sequence(128);
    ASSERT_TRUE(a.ok());
    ASSERT_TRUE(m->forward(*a, p).ok());
    Batcher b(*m, {.max_batch_tokens = 5, .prefill_chunk = 3});
    auto s = m->new_sequence(128);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(b.feed(*s, p).ok());
    EXPECT_EQ(s->n_past(), p.size());
    EXPECT_GE(b.stats().steps, (p.size() + 2) / 3);
    EXPECT_TRUE(std::equal(a->logits().begin(), a->logits().end(), s->logits().begin()));
}

TEST(Batcher, ErrorsAndCancellation) {
    auto m = load_stories();
    if (!m) GTEST_SKIP() << "stories260K.gguf not found";
    Batcher b(*m);
    auto s = m->new_sequence(8);
    ASSERT_TRUE(s.ok());
    const std::vector<int32_t> bad = {1, 1 << 20};
    auto st = b.feed(*s, bad);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("outside the vocabulary"), std::string::npos) << st.error().message;
    const std::vector<int32_t> nine(9, 5);
    st = b.feed(*s, nine);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("context full"), std::string::npos) << st.error().message;
    EXPECT_EQ(s->n_past(), 0u);
    const std::atomic<bool> cancelled{true};
    st = b.feed(*s, std::vector<int32_t>{1, 2, 3}, &cancelled);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message, "cancelled");
    EXPECT_EQ(s->n_past(), 0u);
    EXPECT_TRUE(b.feed(*s, std::vector<int32_t>{1, 2, 3}).ok());
    EXPECT_EQ(s->n_past(), 3u);
    EXPECT_TRUE(b.feed(*s, {}).ok());
}

TEST(Batcher, ShutdownWithIdleQueue) {
    auto m = load_stories();
    if (!m) GTEST_SKIP() << "stories260K.gguf not found";
    for (int i = 0; i < 20; ++i) {
        Batcher b(*m);
        auto s = m->new_sequence(16);
        ASSERT_TRUE(s.ok());
        ASSERT_TRUE(b.feed(*s, std::vector<int32_t>{1, 2}).ok());
    }
}

}  // namespace
}  // namespace realm::engine
