// StopMatcher (stop strings split across chunks in every possible way) and Generation
// (max_tokens, end-of-generation tokens, stop strings and UTF-8 streaming of token pieces).
#include "engine/stop.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gguf/reader.hpp"
#include "gguf/value.hpp"
#include "text/utf8.hpp"

namespace {

using realm::engine::FinishReason;
using realm::engine::Generation;
using realm::engine::SamplingParams;
using realm::engine::StopMatcher;

struct Outcome {
    std::string text;  // everything emitted (pushes + flush when not stopped)
    bool stopped = false;
    std::optional<size_t> index;
};

// Feeds `chunks`, checking after every push that what was emitted plus what is held back is
// exactly the input so far (nothing lost, nothing invented) until a stop.
Outcome feed(const std::vector<std::string>& stops, const std::vector<std::string>& chunks) {
    StopMatcher m(stops);
    Outcome o;
    std::string input;
    for (const auto& c : chunks) {
        input += c;
        auto r = m.push(c);
        o.text += r.text;
        if (r.stopped) {
            o.stopped = true;
            o.index = r.stop_index;
            EXPECT_EQ(m.pending(), 0u);
            auto again = m.push("more");
            EXPECT_TRUE(again.stopped);
            EXPECT_EQ(again.text, "");
            return o;
        }
        EXPECT_EQ(o.text.size() + m.pending(), input.size());
        EXPECT_EQ(input.compare(0, o.text.size(), o.text), 0);
    }
    o.text += m.flush();
    return o;
}

// Every way of cutting `text` into non-empty chunks (2^(n-1) of them).
std::vector<std::vector<std::string>> all_splits(const std::string& text) {
    std::vector<std::vector<std::string>> out;
    const size_t n = text.size();
    for (uint32_t mask = 0; mask < (1u << (n - 1)); ++mask) {
        std::vector<std::string> chunks;
        size_t start = 0;
        for (size_t i = 1; i < n; ++i) {
            if (mask & (1u << (i - 1))) {
                chunks.push_back(text.substr(start, i - start));
                start = i;
            }
        }
        chunks.push_back(text.substr(start));
        out.push_back(std::move(chunks));
    }
    return out;
}

void expect_all_splits(const std::vector<std::string>& stops, const std::string& text, const std::string& want,
                       bool want_stop, std::optional<size_t> want_index = std::nullopt) {
    for (const auto& chunks : all_splits(text)) {
        std::string desc;
        for (const auto& c : chunks) desc += "[" + c + "]";
        const auto o = feed(stops, chunks);
        EXPECT_EQ(o.text, want) << desc;
        EXPECT_EQ(o.stopped, want_stop) << desc;
        if (want_index) EXPECT_EQ(o.index, want_index) << desc;
    }
}

TEST(StopMatcher, SplitAcrossChunksInEveryWay) {
    expect_all_splits({"END"}, "abcENDxyz", "abc", true, 0);
    expect_all_splits({"END"}, "abcENxyzEN", "abcENxyzEN", false);  // never completed: released
}

TEST(StopMatcher, ExamplesFromTheBrief) {
    StopMatcher m({"END"});
    auto a = m.push("E");
    EXPECT_EQ(a.text, "");
    EXPECT_FALSE(a.stopped);
    auto b = m.push("N");
    EXPECT_EQ(b.text, "");
    EXPECT_FALSE(b.stopped);
    auto c = m.push("D");
    EXPECT_EQ(c.text, "");
    EXPECT_TRUE(c.stopped);

    StopMatcher m2({"END"});
    auto x = m2.push("xE");
    EXPECT_EQ(x.text, "x");
    EXPECT_EQ(m2.pending(), 1u);
    auto y = m2.push("ND");
    EXPECT_EQ(y.text, "");
    EXPECT_TRUE(y.stopped);
    EXPECT_TRUE(m2.stopped());
}

TEST(StopMatcher, HeldBackOnlyWhilePossible) {
    StopMatcher m({"END"});
    EXPECT_EQ(m.push("abE").text, "ab");
    EXPECT_EQ(m.push("x").text, "Ex");  // "Ex" cannot start "END"
    EXPECT_EQ(m.push("EN").text, "");
    EXPECT_EQ(m.pending(), 2u);
    EXPECT_EQ(m.push("E").text, "EN");  // "ENE": only the last "E" may still start it
    EXPECT_EQ(m.flush(), "E");
    EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, MultipleStopStrings) {
    expect_all_splits({"STOP", "END"}, "aENDbSTOP", "a", true, 1);
    expect_all_splits({"STOP", "END"}, "aSTOPbEND", "a", true, 0);
    // In one chunk the earliest start wins; streamed, a stop string acts as soon as it is
    // complete, without waiting for a longer one that started earlier (as llama-server does).
    auto whole = feed({"DEF", "ABCDEFG"}, {"xABCDEFG"});
    EXPECT_EQ(whole.text, "x");
    EXPECT_EQ(whole.index, 1u);
    auto streamed = feed({"DEF", "ABCDEFG"}, {"xABCDEF", "G"});
    EXPECT_EQ(streamed.text, "xABC");
    EXPECT_EQ(streamed.index, 0u);
    // same start: the first listed wins, the text before is the same
    auto o = feed({"ab", "abc"}, {"zabc"});
    EXPECT_EQ(o.text, "z");
    EXPECT_EQ(o.index, 0u);
}

TEST(StopMatcher, OverlappingPrefixes) {
    expect_all_splits({"aab"}, "aaab", "a", true);
    expect_all_splits({"abcd", "bce"}, "abce", "a", true, 1);
    expect_all_splits({"abab"}, "ababab", "", true);
    expect_all_splits({"abab"}, "abaabab", "aba", true);
    expect_all_splits({"xyz", "yzq"}, "xyyzq", "xy", true, 1);
}

TEST(StopMatcher, StopAtTheVeryStart) {
    expect_all_splits({"END"}, "ENDabc", "", true, 0);
    expect_all_splits({"END"}, "END", "", true, 0);
}

TEST(StopMatcher, NoStopStringsPassThrough) {
    StopMatcher m;
    EXPECT_EQ(m.push("abc").text, "abc");
    EXPECT_EQ(m.pending(), 0u);
    StopMatcher empties({"", ""});  // ignored
    EXPECT_EQ(empties.push("abc").text, "abc");
    EXPECT_FALSE(empties.stopped());
}

TEST(StopMatcher, RandomisedAgainstFind) {
    // Random texts, stop strings and chunkings over a small alphabet (lots of partial matches).
    std::mt19937 rng(2024);
    const std::string alphabet = "abE";
    auto rand_str = [&](size_t lo, size_t hi) {
        std::string out(std::uniform_int_distribution<size_t>(lo, hi)(rng), 'a');
        for (auto& ch : out) ch = alphabet[std::uniform_int_distribution<size_t>(0, 2)(rng)];
        return out;
    };
    for (int iter = 0; iter < 3000; ++iter) {
        const std::string text = rand_str(0, 14);
        std::vector<std::string> stops{rand_str(1, 4)};
        if (iter % 2) stops.push_back(rand_str(1, 4));
        std::vector<std::string> chunks;
        for (size_t pos = 0; pos < text.size();) {
            const size_t len = std::uniform_int_distribution<size_t>(1, 4)(rng);
            chunks.push_back(text.substr(pos, len));
            pos += len;
        }
        const auto o = feed(stops, chunks);
        const std::string desc = "text " + text + " stop " + stops[0] + (stops.size() > 1 ? "," + stops[1] : "");
        size_t first_end = std::string::npos;  // where the first complete stop string ends
        for (const auto& st : stops) {
            const size_t pos = text.find(st);
            if (pos != std::string::npos) first_end = std::min(first_end, pos + st.size());
        }
        if (first_end == std::string::npos) {
            EXPECT_FALSE(o.stopped) << desc;
            EXPECT_EQ(o.text, text) << desc;
            continue;
        }
        ASSERT_TRUE(o.stopped) << desc;
        ASSERT_TRUE(o.index) << desc;
        const std::string& hit = stops[*o.index];
        // the text before a real occurrence of the matched stop string, found no later than
        // the chunk where the first stop string completed
        EXPECT_EQ(text.compare(o.text.size(), hit.size(), hit), 0) << desc;
        EXPECT_LE(o.text.size() + hit.size(), first_end + 3) << desc;
        if (stops.size() == 1) EXPECT_EQ(o.text, text.substr(0, text.find(hit))) << desc;
    }
}

TEST(StopMatcher, MultibyteStopString) {
    // "€" = E2 82 AC; the held-back prefix always begins at a character boundary
    expect_all_splits({"\xE2\x82\xAC"}, "a\xC3\xA9\xE2\x82\xAC", "a\xC3\xA9", true);
}

// ---------------------------------------------------------------------------------------------
// Generation with a small SPM vocabulary

realm::text::Tokenizer small_tokenizer() {
    realm::gguf::Metadata md;
    md.set("tokenizer.ggml.model", "llama");
    md.set("tokenizer.ggml.tokens",
           std::vector<std::string>{"<unk>", "<s>", "</s>", "E", "N", "D", "x", "ND", "<0xE2>", "<0x82>", "<0xAC>",
                                    "\xE2\x96\x81hi", "<|eot|>"});
    md.set("tokenizer.ggml.scores", std::vector<float>(13, 0.0f));
    md.set("tokenizer.ggml.token_type", std::vector<int32_t>{2, 3, 3, 1, 1, 1, 1, 1, 6, 6, 6, 1, 3});
    md.set("tokenizer.ggml.bos_token_id", uint32_t{1});
    md.set("tokenizer.ggml.eos_token_id", uint32_t{2});
    auto t = realm::text::Tokenizer::from_metadata(md);
    EXPECT_TRUE(t) << t.error().message;
    return std::move(t).value();
}

enum : int32_t { kEos = 2, kE = 3, kN = 4, kD = 5, kX = 6, kND = 7, kB1 = 8, kB2 = 9, kB3 = 10, kHi = 11, kEot = 12 };

TEST(Generation, Utf8SplitCharactersAreHeldBack) {
    const auto tok = small_tokenizer();
    Generation g(tok, SamplingParams{});
    EXPECT_EQ(g.push(kX).text, "x");
    auto a = g.push(kB1);
    EXPECT_EQ(a.text, "");
    EXPECT_FALSE(a.finish);
    EXPECT_EQ(g.push(kB2).text, "");
    EXPECT_EQ(g.push(kB3).text, "\xE2\x82\xAC");
    EXPECT_EQ(g.push(kHi).text, " hi");
    EXPECT_FALSE(g.done());
    EXPECT_EQ(g.text(), "x\xE2\x82\xAC hi");
}

TEST(Generation, EogFinishesWithStop) {
    const auto tok = small_tokenizer();
    ASSERT_TRUE(tok.is_eog(kEos));
    SamplingParams p;
    p.stop = {"END"};
    Generation g(tok, p);
    EXPECT_EQ(g.push(kHi).text, " hi");
    EXPECT_EQ(g.push(kE).text, "");  // could be the start of "END"
    auto end = g.push(kEos);
    EXPECT_EQ(end.text, "E");  // released, the EOG token itself renders nothing
    ASSERT_TRUE(end.finish);
    EXPECT_EQ(*end.finish, FinishReason::Stop);
    EXPECT_STREQ(realm::engine::to_string(*end.finish), "stop");
    EXPECT_EQ(g.tokens(), 3u);
    EXPECT_EQ(g.text(), " hiE");
    EXPECT_FALSE(g.stop_index());
    // after the end nothing more is counted
    auto after = g.push(kX);
    EXPECT_EQ(after.text, "");
    EXPECT_EQ(after.finish, FinishReason::Stop);
    EXPECT_EQ(g.tokens(), 3u);
}

TEST(Generation, IgnoreEosKeepsGoing) {
    const auto tok = small_tokenizer();
    SamplingParams p;
    p.ignore_eos = true;
    Generation g(tok, p);
    auto s = g.push(kEos);
    EXPECT_FALSE(s.finish);
    EXPECT_EQ(s.text, "");  // control token, not rendered by default
    EXPECT_FALSE(g.push(kX).finish);
    EXPECT_EQ(g.text(), "x");

    Generation special(tok, p, /*special=*/true);
    EXPECT_EQ(special.push(kEos).text, "</s>");
}

TEST(Generation, StopStringAcrossTokens) {
    const auto tok = small_tokenizer();
    SamplingParams p;
    p.stop = {"END"};
    Generation g(tok, p);
    EXPECT_EQ(g.push(kX).text, "x");
    EXPECT_EQ(g.push(kE).text, "");
    auto s = g.push(kND);
    EXPECT_EQ(s.text, "");
    EXPECT_EQ(s.finish, FinishReason::Stop);
    EXPECT_EQ(g.text(), "x");
    EXPECT_EQ(g.stop_index(), 0u);

    Generation g2(tok, p);
    for (int32_t t : {kE, kN}) EXPECT_FALSE(g2.push(t).finish);
    EXPECT_EQ(g2.push(kD).finish, FinishReason::Stop);
    EXPECT_EQ(g2.text(), "");
}

TEST(Generation, MaxTokensFinishesWithLengthAndReleasesHeldText) {
    const auto tok = small_tokenizer();
    SamplingParams p;
    p.stop = {"END"};
    p.max_tokens = 3;
    Generation g(tok, p);
    EXPECT_EQ(g.push(kX).text, "x");
    EXPECT_EQ(g.push(kE).text, "");
    auto last = g.push(kN);
    EXPECT_EQ(last.text, "EN");
    ASSERT_TRUE(last.finish);
    EXPECT_EQ(*last.finish, FinishReason::Length);
    EXPECT_STREQ(realm::engine::to_string(*last.finish), "length");
    EXPECT_EQ(g.text(), "xEN");
    EXPECT_EQ(g.tokens(), 3u);
}

TEST(Generation, StopOnTheLastAllowedTokenIsStop) {
    const auto tok = small_tokenizer();
    SamplingParams p;
    p.stop = {"END"};
    p.max_tokens = 2;
    Generation g(tok, p);
    g.push(kE);
    EXPECT_EQ(g.push(kND).finish, FinishReason::Stop);
    Generation g2(tok, p);
    g2.push(kX);
    EXPECT_EQ(g2.push(kEot).finish, FinishReason::Length);  // not an EOG here: no eot id set
}

TEST(Generation, MaxTokensWithIncompleteUtf8) {
    const auto tok = small_tokenizer();
    SamplingParams p;
    p.max_tokens = 2;
    Generation g(tok, p);
    EXPECT_EQ(g.push(kB1).text, "");
    auto last = g.push(kB2);
    EXPECT_EQ(last.text, "\xEF\xBF\xBD\xEF\xBF\xBD");  // two U+FFFD, one per dangling byte
    EXPECT_EQ(last.finish, FinishReason::Length);
}

TEST(Generation, FinishFromOutside) {
    const auto tok = small_tokenizer();
    SamplingParams p;
    p.stop = {"END"};
    Generation g(tok, p);
    g.push(kX);
    g.push(kE);
    EXPECT_EQ(g.finish(), "E");
    EXPECT_EQ(g.finish_reason(), FinishReason::Length);
    EXPECT_EQ(g.finish(), "");
    EXPECT_EQ(g.text(), "xE");
}

// Real vocabularies from ../shared: a multilingual text split into tokens (byte fallback for SPM,
// byte-level BPE for GPT-2 cut characters into several tokens) streams out as valid UTF-8 at
// every step, stops before the stop string and matches the concatenated pieces.
class GenerationSharedVocab : public ::testing::TestWithParam<std::string> {};

TEST_P(GenerationSharedVocab, StreamsValidUtf8AndStops) {
    const char* env = std::getenv("REALM_SHARED_DIR");
    const std::filesystem::path dir = env && *env ? std::filesystem::path(env) : std::filesystem::path("/work/shared");
    const auto path = dir / "vocab" / ("ggml-vocab-" + GetParam() + ".gguf");
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found";
    auto f = realm::gguf::File::open(path.string());
    ASSERT_TRUE(f) << f.error().message;
    auto tok = realm::text::Tokenizer::from_metadata(f->metadata());
    ASSERT_TRUE(tok) << tok.error().message;

    const std::string text = "Hello w\xC3\xB6rld \xF0\x9F\x98\x80 \xE4\xBD\xA0\xE5\xA5\xBD STOP tail \xE2\x82\xAC";
    const auto ids = tok->encode(text, /*add_special=*/false, /*parse_special=*/false);
    std::string pieces;
    for (int32_t id : ids) pieces += tok->token_to_piece(id, false);
    ASSERT_TRUE(realm::text::utf8_is_valid(pieces));
    size_t partial = 0;  // tokens that are not whole characters on their own
    for (int32_t id : ids) partial += !realm::text::utf8_is_valid(tok->token_to_piece(id, false));
    EXPECT_GT(partial, 0u) << "the text should split some character across tokens";

    for (bool with_stop : {false, true}) {
        SamplingParams p;
        if (with_stop) p.stop = {"STOP", "\xE4\xBD\xA0\xE5\xA5\xBD!"};
        Generation g(*tok, p);
        for (int32_t id : ids) {
            const auto st = g.push(id);
            EXPECT_TRUE(realm::text::utf8_is_valid(st.text)) << GetParam();
            if (st.finish) break;
        }
        if (with_stop) {
            EXPECT_EQ(g.finish_reason(), FinishReason::Stop);
            EXPECT_EQ(g.text(), pieces.substr(0, pieces.find("STOP")));
        } else {
            EXPECT_FALSE(g.done());
            EXPECT_EQ(g.text() + g.finish(), pieces);
            EXPECT_EQ(g.finish_reason(), FinishReason::Length);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, GenerationSharedVocab,
                         ::testing::Values("llama-spm", "gpt-2", "phi-3", "falcon"));

}  // namespace
