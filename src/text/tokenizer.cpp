#include "text/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <queue>
#include <unordered_map>
#include <utility>

#include "text/tokenizer_pretok.hpp"
#include "text/unicode.hpp"
#include "text/utf8.hpp"

namespace realm::text {

namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's space

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

struct TokenData {
    std::string text;
    float score = 0.0f;
    TokenType type = TokenType::Normal;
    bool lstrip = false;  // special-token matching eats whitespace on this side
    bool rstrip = false;
};

// Text -> token id. Open addressing over a flat slot array (one cache line per probe
// instead of unordered_map's node chase); lookups sit in the innermost encode loops.
class TokenIndex {
public:
    // `tokens` must outlive the index and stay in place (the slots refer to their texts).
    void build(const std::vector<TokenData>* tokens) {
        tokens_ = tokens;
        size_t cap = 16;
        while (cap < tokens->size() * 2) cap <<= 1;
        slots_.assign(cap, 0);
        mask_ = cap - 1;
        for (size_t i = 0; i < tokens->size(); ++i) insert((*tokens)[i].text, static_cast<int32_t>(i));
    }
    int32_t find(std::string_view s) const {
        if (slots_.empty()) return -1;
        const uint64_t h = hash(s);
        const auto tag = static_cast<uint32_t>(h >> 32);
        for (size_t i = h & mask_;; i = (i + 1) & mask_) {
            const uint64_t slot = slots_[i];
            if (slot == 0) return -1;
            if (static_cast<uint32_t>(slot >> 32) == tag) {
                const auto id = static_cast<int32_t>(static_cast<uint32_t>(slot) - 1);
                if ((*tokens_)[static_cast<size_t>(id)].text == s) return id;
            }
        }
    }

private:
    static uint64_t hash(std::string_view s) {
        uint64_t h = 0xcbf29ce484222325ull ^ s.size();  // FNV-1a, then a final mix
        for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
        h ^= h >> 29;
        h *= 0xbf58476d1ce4e5b9ull;
        return h ^ (h >> 32);
    }
    void insert(std::string_view s, int32_t id) {
        const uint64_t h = hash(s);
        const uint64_t entry = (h & 0xFFFFFFFF00000000ull) | static_cast<uint32_t>(id + 1);
        for (size_t i = h & mask_;; i = (i + 1) & mask_) {
            uint64_t& slot = slots_[i];
            if (slot == 0 || ((slot >> 32) == (h >> 32) && (*tokens_)[static_cast<uint32_t>(slot) - 1].text ==
                                                               s)) {  // duplicate text: the last id wins
                slot = entry;
                return;
            }
        }
    }

    const std::vector<TokenData>* tokens_ = nullptr;
    std::vector<uint64_t> slots_;  // (hash high 32 bits << 32) | (id + 1); 0 = empty
    size_t mask_ = 0;
};

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
    std::string out;
    out.reserve(s.size());
    size_t pos = 0;
    while (true) {
        const size_t hit = s.find(from, pos);
        if (hit == std::string_view::npos) break;
        out.append(s.substr(pos, hit - pos));
        out.append(to);
        pos = hit + from.size();
    }
    out.append(s.substr(pos));
    return out;
}

// GPT-2's reversible byte <-> printable code point mapping.
struct ByteCodec {
    std::array<uint32_t, 256> byte_to_cp{};
    std::array<int16_t, 512> cp_to_byte{};
    ByteCodec() {
        cp_to_byte.fill(-1);
        std::array<bool, 256> direct{};
        for (int b = 0; b < 256; ++b) direct[b] = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t n = 0;
        for (int b = 0; b < 256; ++b) {
            byte_to_cp[b] = direct[b] ? static_cast<uint32_t>(b) : 256 + n++;
            cp_to_byte[byte_to_cp[b]] = static_cast<int16_t>(b);
        }
    }
};

const ByteCodec& byte_codec() {
    static const ByteCodec codec;
    return codec;
}

bool is_wpm_chinese_char(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Token texts llama.cpp treats as end-of-turn / end-of-generation markers.
constexpr std::string_view kEotNames[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<\xEF\xBD\x9C"
    "end\xE2\x96\x81"
    "of\xE2\x96\x81"
    "sentence\xEF\xBD\x9C>",
    "<end_of_utterance>",
};
constexpr std::string_view kEogNames[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\xEF\xBD\x9C"
    "end\xE2\x96\x81"
    "of\xE2\x96\x81"
    "sentence\xEF\xBD\x9C>",
    "[e~[",
};

}  // namespace

struct Tokenizer::Impl {
    TokenizerKind kind = TokenizerKind::Spm;
    std::string model;
    std::string pre;
    std::vector<TokenData> tokens;
    TokenIndex token_to_id;  // refers to `tokens`
    size_t max_token_len = 0;

    // BPE
    detail::PreTokenizerConfig pretok;
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (left id, right id) -> (rank, merged id or -1)
    // Token of each single byte: BPE its byte-level character, SPM <0xXX> (or the raw byte). -1 if none.
    std::array<int32_t, 256> byte_token{};

    // WordPiece
    bool lowercase = true;
    bool strip_accents = true;

    int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, sep = -1, pad = -1, mask = -1, newline = -1;
    int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
    bool add_bos = false, add_eos = false, add_sep = false;
    bool add_space_prefix = false;
    bool clean_spaces = false;

    std::vector<int32_t> special_tokens;    // control / user-defined / unknown, longest text first
    std::vector<int32_t> special_sorted;    // the same, by text (bytewise), for the occurrence scan
    std::array<bool, 256> special_first{};  // bytes that start some special token
    std::vector<int32_t> eog;               // sorted
    std::vector<std::string> pieces;        // token_to_piece(id, special = true)

    int32_t find(std::string_view s) const { return token_to_id.find(s); }
    const TokenData* data(int32_t id) const {
        return id >= 0 && static_cast<size_t>(id) < tokens.size() ? &tokens[static_cast<size_t>(id)] : nullptr;
    }

    struct Fragment {
        int32_t token;  // -1: raw text
        size_t offset, length;
    };
    std::vector<Fragment> partition(std::string_view text, bool parse_special) const;

    void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
    struct BpeScratch;
    void encode_bpe(std::string_view text, std::vector<int32_t>& out, BpeScratch& scratch) const;
    void encode_bpe_word(const std::string& word, std::vector<int32_t>& out, BpeScratch& scratch) const;
    // Which special tokens occur anywhere in `text` (ids, unordered).
    void find_special(std::string_view text, bool parse_special, std::vector<int32_t>& found) const;
    void encode_wpm(std::string_view text, std::vector<int32_t>& out) const;
    std::string make_piece(int32_t id) const;
};

struct Tokenizer::Impl::BpeScratch {
    struct Sym {
        int32_t prev, next;
        size_t off, n;
        int32_t id;
    };
    struct Bigram {
        int32_t rank;
        int32_t left, right;
        int32_t left_id, right_id;
        // std heap is a max-heap: "less" = lower priority = higher rank, then later position
        bool operator<(const Bigram& o) const { return rank > o.rank || (rank == o.rank && left > o.left); }
    };
    std::vector<Sym> syms;
    std::vector<Bigram> heap;
    std::string word, utf8;
    // Words seen earlier in this call (texts repeat words a lot); bounded.
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

// ---------------------------------------------------------------------------------------------
// Loading

namespace {

Result<const std::vector<std::string>*> string_array(const gguf::Metadata& md, std::string_view key) {
    auto arr = md.get_array(key);
    if (!arr) return arr.error();
    const auto* v = (*arr)->get_if<std::string>();
    if (!v) return make_error(std::string(key) + ": expected an array of strings");
    return v;
}

// An optional id key: absent -> keep `id`; present and in range -> set; out of range -> keep.
Status read_id(const gguf::Metadata& md, std::string_view key, size_t n_tokens, int32_t& id) {
    const gguf::Value* v = md.find(key);
    if (!v) return {};
    auto x = v->to_int<int64_t>();
    if (!x) return make_error(std::string(key) + ": expected an integer");
    if (*x >= 0 && static_cast<uint64_t>(*x) < n_tokens) id = static_cast<int32_t>(*x);
    return {};
}

Status read_flag(const gguf::Metadata& md, std::string_view key, bool& flag) {
    if (!md.contains(key)) return {};
    auto b = md.get_bool(key);
    if (!b) return b.error();
    flag = *b;
    return {};
}

}  // namespace

Result<Tokenizer> Tokenizer::from_metadata(const gguf::Metadata& md) {
    auto impl = std::make_unique<Impl>();
    Impl& t = *impl;

    auto model = md.get_string("tokenizer.ggml.model");
    if (!model) return model.error();
    t.model = std::string(*model);
    auto pre = md.get_string("tokenizer.ggml.pre", "");
    if (!pre) return pre.error();
    t.pre = std::string(*pre);

    if (t.model == "llama") {
        t.kind = TokenizerKind::Spm;
        t.bos = 1, t.eos = 2, t.unk = 0;
        t.add_space_prefix = true;
        t.add_bos = true;
    } else if (t.model == "gpt2") {
        t.kind = TokenizerKind::Bpe;
        t.bos = 11, t.eos = 11;  // llama.cpp's legacy defaults, used only when the keys are absent
        auto cfg = detail::pre_tokenizer_config(t.pre);
        if (!cfg) return make_error("unsupported pre-tokenizer tokenizer.ggml.pre = '" + t.pre + "'");
        t.pretok = std::move(*cfg);
        t.clean_spaces = t.pretok.clean_spaces;
        if (t.pretok.ignore_merges) t.add_bos = true;
    } else if (t.model == "bert") {
        t.kind = TokenizerKind::WordPiece;
        t.bos = 101, t.unk = 100, t.sep = 102, t.pad = 0, t.mask = 103;
        t.add_bos = true, t.add_sep = true;
        t.clean_spaces = true;
    } else {
        return make_error("unsupported tokenizer model tokenizer.ggml.model = '" + t.model + "'");
    }

    // tokens, scores, types
    auto toks = string_array(md, "tokenizer.ggml.tokens");
    if (!toks) return toks.error();
    const auto& texts = **toks;
    const size_t n = texts.size();
    if (n == 0) return make_error("tokenizer.ggml.tokens is empty");
    if (n > static_cast<size_t>(INT32_MAX)) return make_error("tokenizer.ggml.tokens: too many tokens");

    const std::vector<float>* scores_f = nullptr;
    const std::vector<int32_t>* scores_i = nullptr;
    if (md.contains("tokenizer.ggml.scores")) {
        auto arr = md.get_array("tokenizer.ggml.scores");
        if (!arr) return arr.error();
        scores_f = (*arr)->get_if<float>();
        scores_i = (*arr)->get_if<int32_t>();
        if (!scores_f && !scores_i) return make_error("tokenizer.ggml.scores: expected an array of f32 or i32");
        const size_t ns = scores_f ? scores_f->size() : scores_i->size();
        if (ns < n) {
            return make_error("tokenizer.ggml.scores has " + std::to_string(ns) + " entries for " + std::to_string(n) +
                              " tokens");
        }
    }
    const std::vector<int32_t>* types = nullptr;
    if (md.contains("tokenizer.ggml.token_type")) {
        auto arr = md.get_array("tokenizer.ggml.token_type");
        if (!arr) return arr.error();
        types = (*arr)->get_if<int32_t>();
        if (!types) return make_error("tokenizer.ggml.token_type: expected an array of i32");
        if (types->size() < n) {
            return make_error("tokenizer.ggml.token_type has " + std::to_string(types->size()) + " entries for " +
                              std::to_string(n) + " tokens");
        }
    }

    t.tokens.resize(n);
    for (size_t i = 0; i < n; ++i) {
        TokenData& d = t.tokens[i];
        d.text = texts[i].empty() ? "[EMPTY_" + std::to_string(i) + "]" : texts[i];
        d.score = scores_f ? (*scores_f)[i] : scores_i ? static_cast<float>((*scores_i)[i]) : 0.0f;
        if (types) {
            const int32_t ty = (*types)[i];
            d.type = (ty >= 0 && ty <= 6) ? static_cast<TokenType>(ty) : TokenType::Undefined;
        }
        t.max_token_len = std::max(t.max_token_len, d.text.size());
    }

    t.token_to_id.build(&t.tokens);  // a duplicate text maps to its last id, as in llama.cpp

    // merges
    if (t.kind == TokenizerKind::Bpe) {
        auto merges = string_array(md, "tokenizer.ggml.merges");
        if (!merges) return merges.error();
        t.merges.reserve((*merges)->size());
        int32_t rank = 0;
        for (const std::string& m : **merges) {
            const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
            if (sp == std::string::npos || sp + 1 >= m.size()) {
                return make_error("tokenizer.ggml.merges[" + std::to_string(rank) + "] = '" + m +
                                  "' is not of the form 'left right'");
            }
            const std::string_view mv(m);
            const int32_t l = t.find(mv.substr(0, sp));
            const int32_t r = t.find(mv.substr(sp + 1));
            if (l >= 0 && r >= 0) {
                std::string joined = m.substr(0, sp) + m.substr(sp + 1);
                const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
                t.merges.try_emplace(key, rank, t.find(joined));
            }
            ++rank;
        }
    }

    // byte tokens
    static const char* kHex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
        int32_t id = -1;
        if (t.kind == TokenizerKind::Bpe) {
            id = t.find(utf8_encode(byte_codec().byte_to_cp[static_cast<size_t>(b)]));
        } else if (t.kind == TokenizerKind::Spm) {
            const char buf[6] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
            id = t.find(std::string_view(buf, 6));
            if (id < 0) id = t.find(std::string(1, static_cast<char>(b)));
        }
        t.byte_token[static_cast<size_t>(b)] = id;
    }

    // special ids and flags
    struct IdKey {
        const char* key;
        int32_t* id;
    };
    const IdKey id_keys[] = {
        {"tokenizer.ggml.bos_token_id", &t.bos},         {"tokenizer.ggml.eos_token_id", &t.eos},
        {"tokenizer.ggml.eot_token_id", &t.eot},         {"tokenizer.ggml.eom_token_id", &t.eom},
        {"tokenizer.ggml.unknown_token_id", &t.unk},     {"tokenizer.ggml.seperator_token_id", &t.sep},
        {"tokenizer.ggml.padding_token_id", &t.pad},     {"tokenizer.ggml.mask_token_id", &t.mask},
        {"tokenizer.ggml.fim_pre_token_id", &t.fim_pre}, {"tokenizer.ggml.fim_suf_token_id", &t.fim_suf},
        {"tokenizer.ggml.fim_mid_token_id", &t.fim_mid}, {"tokenizer.ggml.fim_pad_token_id", &t.fim_pad},
        {"tokenizer.ggml.fim_rep_token_id", &t.fim_rep}, {"tokenizer.ggml.fim_sep_token_id", &t.fim_sep},
        {"tokenizer.ggml.prefix_token_id", &t.fim_pre},  {"tokenizer.ggml.suffix_token_id", &t.fim_suf},
        {"tokenizer.ggml.middle_token_id", &t.fim_mid},
    };
    for (const auto& k : id_keys) {
        if (*k.id >= 0 && static_cast<size_t>(*k.id) >= n) *k.id = -1;  // default out of range
        if (auto st = read_id(md, k.key, n, *k.id); !st) return st.error();
    }
    if (t.pre == "glm4" || t.pre == "chatglm-bpe") t.bos = -1;
    for (auto [key, flag] :
         {std::pair{"tokenizer.ggml.add_bos_token", &t.add_bos}, std::pair{"tokenizer.ggml.add_eos_token", &t.add_eos},
          std::pair{"tokenizer.ggml.add_sep_token", &t.add_sep},
          std::pair{"tokenizer.ggml.add_space_prefix", &t.add_space_prefix}}) {
        if (auto st = read_flag(md, key, *flag); !st) return st.error();
    }
    if (auto st = read_flag(md, "tokenizer.ggml.normalizer.lowercase", t.lowercase); !st) return st.error();
    t.strip_accents = t.lowercase;
    if (auto st = read_flag(md, "tokenizer.ggml.normalizer.strip_accents", t.strip_accents); !st) return st.error();

    // End-of-turn detection by text, as llama.cpp does for older conversions.
    auto force_control = [&](int32_t id) {
        auto& ty = t.tokens[static_cast<size_t>(id)].type;
        if (ty != TokenType::Control) ty = TokenType::Control;
    };
    if (t.eot < 0) {
        for (auto name : kEotNames) {
            if (int32_t id = t.find(name); id >= 0) {
                t.eot = id;
                force_control(id);
                break;
            }
        }
    }
    if (t.eom < 0) {
        if (int32_t id = t.find("<|eom_id|>"); id >= 0) {
            t.eom = id;
            force_control(id);
        }
    }
    for (int32_t id : {t.fim_pad, t.fim_rep, t.fim_sep}) {
        if (id >= 0) t.eog.push_back(id);
    }
    for (auto name : kEogNames) {
        if (int32_t id = t.find(name); id >= 0) {
            t.eog.push_back(id);
            force_control(id);
        }
    }
    for (int32_t id : {t.eos, t.eot, t.eom}) {
        if (id >= 0) t.eog.push_back(id);
    }
    for (auto name : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}) {  // gpt-oss: always rendered
        if (int32_t id = t.find(name); id >= 0) t.tokens[static_cast<size_t>(id)].type = TokenType::UserDefined;
    }
    // gpt-oss: "<|end|>" ends a message, not the generation, when "<|return|>" and "<|call|>" exist.
    if (int32_t end = t.find("<|end|>"); end >= 0 && t.find("<|return|>") >= 0 && t.find("<|call|>") >= 0) {
        t.eog.erase(std::remove(t.eog.begin(), t.eog.end(), end), t.eog.end());
        t.tokens[static_cast<size_t>(end)].type = TokenType::UserDefined;
    }
    // gemma4 / paddleocr: "</s>" is ordinary text when "<|tool_response>" exists.
    if (int32_t s_id = t.find("</s>"); s_id >= 0 && t.find("<|tool_response>") >= 0) {
        t.eog.erase(std::remove(t.eog.begin(), t.eog.end(), s_id), t.eog.end());
        t.tokens[static_cast<size_t>(s_id)].type = TokenType::Normal;
    }
    std::sort(t.eog.begin(), t.eog.end());
    t.eog.erase(std::unique(t.eog.begin(), t.eog.end()), t.eog.end());

    // Special tokens matched in text, longest first.
    for (size_t i = 0; i < n; ++i) {
        const TokenType ty = t.tokens[i].type;
        if (ty == TokenType::Control || ty == TokenType::UserDefined || ty == TokenType::Unknown) {
            t.special_tokens.push_back(static_cast<int32_t>(i));
        }
    }
    std::sort(t.special_tokens.begin(), t.special_tokens.end(), [&](int32_t a, int32_t b) {
        const size_t la = t.tokens[static_cast<size_t>(a)].text.size();
        const size_t lb = t.tokens[static_cast<size_t>(b)].text.size();
        return la != lb ? la > lb : a < b;
    });
    t.special_sorted = t.special_tokens;
    std::sort(t.special_sorted.begin(), t.special_sorted.end(), [&](int32_t a, int32_t b) {
        return t.tokens[static_cast<size_t>(a)].text < t.tokens[static_cast<size_t>(b)].text;
    });
    for (int32_t id : t.special_sorted)
        t.special_first[static_cast<unsigned char>(t.tokens[static_cast<size_t>(id)].text[0])] = true;
    {
        // phi-3: special tokens swallow the whitespace after them (llama.cpp's per-model attributes)
        auto general_name = md.get_string("general.name", "");
        std::string name(general_name.ok() ? *general_name : std::string_view());
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
            for (int32_t id : t.special_tokens) t.tokens[static_cast<size_t>(id)].rstrip = true;
            if (int32_t id = t.find("</s>"); id >= 0) t.tokens[static_cast<size_t>(id)].rstrip = true;
            for (auto s : {"<unk>", "<s>", "<|endoftext|>"}) {
                if (int32_t id = t.find(s); id >= 0) t.tokens[static_cast<size_t>(id)].rstrip = false;
            }
        }
    }

    t.pieces.resize(n);
    for (size_t i = 0; i < n; ++i) t.pieces[i] = t.make_piece(static_cast<int32_t>(i));

    // newline token
    if (t.kind == TokenizerKind::Spm) {
        t.newline = t.byte_token['\n'];
        if (t.newline < 0) t.newline = t.pad;
    } else if (t.kind == TokenizerKind::WordPiece) {
        t.newline = t.pad;
    } else {
        std::vector<int32_t> ids;
        Impl::BpeScratch scratch;
        t.encode_bpe("\n", ids, scratch);
        t.newline = ids.empty() ? t.pad : ids.front();
    }

    return Tokenizer(std::move(impl));
}

// ---------------------------------------------------------------------------------------------
// Encoding

std::vector<Tokenizer::Impl::Fragment> Tokenizer::Impl::partition(std::string_view text, bool parse_special) const {
    std::vector<Fragment> frags;
    if (text.empty()) return frags;
    frags.push_back({-1, 0, text.size()});
    // Splitting only ever shortens the text fragments, so the special tokens that can
    // match are those occurring in the whole text: find them in one scan, then apply
    // them longest first (llama.cpp's order).
    std::vector<int32_t> candidates;
    find_special(text, parse_special, candidates);
    if (candidates.empty()) return frags;
    std::sort(candidates.begin(), candidates.end(), [&](int32_t a, int32_t b) {
        const size_t la = tokens[static_cast<size_t>(a)].text.size();
        const size_t lb = tokens[static_cast<size_t>(b)].text.size();
        return la != lb ? la > lb : a < b;
    });
    std::vector<Fragment> next;
    for (int32_t id : candidates) {
        const TokenData& d = tokens[static_cast<size_t>(id)];
        const std::string_view needle = d.text;
        next.clear();
        for (const Fragment& f : frags) {
            if (f.token >= 0) {
                next.push_back(f);
                continue;
            }
            size_t off = f.offset;
            size_t len = f.length;
            while (len > 0) {
                const size_t hit = text.substr(off, len).find(needle);
                if (hit == std::string_view::npos) {
                    next.push_back({-1, off, len});
                    break;
                }
                size_t left_len = hit;
                if (d.lstrip) {
                    while (left_len > 0 && std::isspace(static_cast<unsigned char>(text[off + left_len - 1])))
                        --left_len;
                }
                if (left_len > 0) next.push_back({-1, off, left_len});
                next.push_back({id, 0, 0});
                size_t roff = off + hit + needle.size();
                size_t rlen = len - hit - needle.size();
                if (d.rstrip) {
                    while (rlen > 0 && std::isspace(static_cast<unsigned char>(text[roff]))) ++roff, --rlen;
                }
                off = roff;
                len = rlen;
            }
        }
        frags.swap(next);
    }
    return frags;
}

void Tokenizer::Impl::find_special(std::string_view text, bool parse_special, std::vector<int32_t>& found) const {
    std::vector<bool> seen;
    const auto text_of = [&](size_t sorted_index) -> const std::string& {
        return tokens[static_cast<size_t>(special_sorted[sorted_index])].text;
    };
    for (size_t i = 0; i < text.size(); ++i) {
        if (!special_first[static_cast<unsigned char>(text[i])]) continue;
        // Walk the sorted list like a trie: [lo, hi) holds the tokens starting with text[i, i + k).
        size_t lo = 0, hi = special_sorted.size();
        for (size_t k = 0; i + k < text.size() && lo < hi; ++k) {
            while (lo < hi && text_of(lo).size() == k) ++lo;  // complete matches, recorded below
            const auto c = static_cast<unsigned char>(text[i + k]);
            const auto key = [&](size_t idx) { return static_cast<unsigned char>(text_of(idx)[k]); };
            size_t a = lo, b = hi;  // lower bound of c
            while (a < b) {
                const size_t m = a + (b - a) / 2;
                if (key(m) < c)
                    a = m + 1;
                else
                    b = m;
            }
            size_t e = a, f = hi;  // upper bound of c
            while (e < f) {
                const size_t m = e + (f - e) / 2;
                if (key(m) <= c)
                    e = m + 1;
                else
                    f = m;
            }
            lo = a;
            hi = e;
            for (size_t j = lo; j < hi && text_of(j).size() == k + 1; ++j) {
                const int32_t id = special_sorted[j];
                const TokenType ty = tokens[static_cast<size_t>(id)].type;
                if (!parse_special && (ty == TokenType::Control || ty == TokenType::Unknown)) continue;
                if (seen.empty()) seen.assign(special_sorted.size(), false);
                if (!seen[j]) {
                    seen[j] = true;
                    found.push_back(id);
                }
            }
        }
    }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    const Impl& t = *impl_;
    std::vector<int32_t> out;
    const auto frags = t.partition(text, parse_special);
    switch (t.kind) {
        case TokenizerKind::Spm: {
            if (add_special && t.add_bos && t.bos >= 0) out.push_back(t.bos);
            bool prev_special = true;
            for (const auto& f : frags) {
                if (f.token >= 0) {
                    out.push_back(f.token);
                    prev_special = true;
                    continue;
                }
                std::string s;
                if (t.add_space_prefix && prev_special) s = " ";
                s.append(text.substr(f.offset, f.length));
                t.encode_spm(replace_all(s, " ", kSpaceMarker), out);
                prev_special = false;
            }
            if (add_special && t.add_eos && t.eos >= 0) out.push_back(t.eos);
            break;
        }
        case TokenizerKind::Bpe: {
            if (add_special && t.add_bos && t.bos >= 0) out.push_back(t.bos);
            Impl::BpeScratch scratch;
            for (const auto& f : frags) {
                if (f.token >= 0) {
                    out.push_back(f.token);
                } else {
                    t.encode_bpe(text.substr(f.offset, f.length), out, scratch);
                }
            }
            if (add_special && t.add_eos && t.eos >= 0) out.push_back(t.eos);
            break;
        }
        case TokenizerKind::WordPiece: {
            if (add_special && t.bos >= 0) out.push_back(t.bos);
            for (const auto& f : frags) {
                if (f.token >= 0) {
                    out.push_back(f.token);
                } else {
                    t.encode_wpm(text.substr(f.offset, f.length), out);
                }
            }
            if (add_special && t.sep >= 0) out.push_back(t.sep);
            break;
        }
    }
    return out;
}

void Tokenizer::Impl::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
    struct Sym {
        int32_t prev, next;
        size_t off, n;
    };
    struct Bigram {
        int32_t left, right;
        float score;
        size_t size;
    };
    struct Cmp {
        bool operator()(const Bigram& a, const Bigram& b) const {
            return a.score < b.score || (a.score == b.score && a.left > b.left);
        }
    };
    std::vector<Sym> syms;
    syms.reserve(text.size());
    for (size_t off = 0; off < text.size();) {
        const size_t n = std::min(utf8_lead_len(static_cast<unsigned char>(text[off])), text.size() - off);
        const auto idx = static_cast<int32_t>(syms.size());
        syms.push_back({idx - 1, off + n == text.size() ? -1 : idx + 1, off, n});
        off += n;
    }
    std::priority_queue<Bigram, std::vector<Bigram>, Cmp> queue;
    auto try_add = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        const Sym& a = syms[static_cast<size_t>(l)];
        const Sym& b = syms[static_cast<size_t>(r)];
        const int32_t id = find(text.substr(a.off, a.n + b.n));
        if (id < 0) return;
        queue.push({l, r, tokens[static_cast<size_t>(id)].score, a.n + b.n});
    };
    for (size_t i = 1; i < syms.size(); ++i) try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
    while (!queue.empty()) {
        const Bigram bg = queue.top();
        queue.pop();
        Sym& l = syms[static_cast<size_t>(bg.left)];
        Sym& r = syms[static_cast<size_t>(bg.right)];
        if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size) continue;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) syms[static_cast<size_t>(r.next)].prev = bg.left;
        try_add(l.prev, bg.left);
        try_add(bg.left, l.next);
    }
    for (int32_t i = syms.empty() ? -1 : 0; i != -1; i = syms[static_cast<size_t>(i)].next) {
        const Sym& s = syms[static_cast<size_t>(i)];
        const int32_t id = find(text.substr(s.off, s.n));
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        for (size_t j = 0; j < s.n; ++j) {  // byte fallback
            const int32_t b = byte_token[static_cast<unsigned char>(text[s.off + j])];
            if (b >= 0) {
                out.push_back(b);
            } else if (unk >= 0) {
                out.push_back(unk);
            }
        }
    }
}

void Tokenizer::Impl::encode_bpe(std::string_view text, std::vector<int32_t>& out, BpeScratch& scratch) const {
    const auto cps = utf8_to_codepoints(text);
    const auto lens = detail::pre_tokenize(pretok.stages, cps);
    const auto& codec = byte_codec();
    std::string& word = scratch.word;
    std::string& utf8 = scratch.utf8;
    size_t start = 0;
    for (size_t len : lens) {
        word.clear();
        for (size_t i = start; i < start + len; ++i) {
            utf8.clear();
            utf8_append(utf8, cps[i]);
            for (unsigned char b : utf8) utf8_append(word, codec.byte_to_cp[b]);
        }
        start += len;
        if (auto it = scratch.cache.find(std::string_view(word)); it != scratch.cache.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            continue;
        }
        const size_t before = out.size();
        encode_bpe_word(word, out, scratch);
        constexpr size_t kMaxCache = 1 << 14;
        if (len > 1 && scratch.cache.size() < kMaxCache) {
            scratch.cache.emplace(word,
                                  std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(before), out.end()));
        }
    }
}

void Tokenizer::Impl::encode_bpe_word(const std::string& word, std::vector<int32_t>& out, BpeScratch& scratch) const {
    if (pretok.ignore_merges) {
        if (int32_t id = find(word); id >= 0) {
            out.push_back(id);
            return;
        }
    }
    using Bigram = BpeScratch::Bigram;
    auto& syms = scratch.syms;
    auto& heap = scratch.heap;
    syms.clear();
    heap.clear();
    const std::string_view wv(word);
    for (size_t off = 0; off < word.size();) {
        const size_t n = std::min(utf8_lead_len(static_cast<unsigned char>(word[off])), word.size() - off);
        const auto idx = static_cast<int32_t>(syms.size());
        syms.push_back({idx - 1, off + n == word.size() ? -1 : idx + 1, off, n, find(wv.substr(off, n))});
        off += n;
    }
    const auto merge_key = [](int32_t a, int32_t b) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    };
    auto try_add = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        const int32_t a = syms[static_cast<size_t>(l)].id;
        const int32_t b = syms[static_cast<size_t>(r)].id;
        if (a < 0 || b < 0) return;
        auto it = merges.find(merge_key(a, b));
        if (it == merges.end()) return;
        heap.push_back({it->second.first, l, r, a, b});
        std::push_heap(heap.begin(), heap.end());
    };
    for (size_t i = 1; i < syms.size(); ++i) try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end());
        const Bigram bg = heap.back();
        heap.pop_back();
        auto& l = syms[static_cast<size_t>(bg.left)];
        auto& r = syms[static_cast<size_t>(bg.right)];
        if (l.n == 0 || r.n == 0 || l.id != bg.left_id || r.id != bg.right_id || l.next != bg.right) continue;
        l.id = merges.find(merge_key(l.id, r.id))->second.second;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) syms[static_cast<size_t>(r.next)].prev = bg.left;
        try_add(l.prev, bg.left);
        try_add(bg.left, l.next);
    }
    for (int32_t i = syms.empty() ? -1 : 0; i != -1; i = syms[static_cast<size_t>(i)].next) {
        const auto& sym = syms[static_cast<size_t>(i)];
        if (sym.id >= 0) {
            out.push_back(sym.id);
            continue;
        }
        // Not in the vocabulary: single bytes of the encoded text, as llama.cpp does.
        for (size_t j = 0; j < sym.n; ++j) {
            if (int32_t id = find(wv.substr(sym.off + j, 1)); id >= 0) out.push_back(id);
        }
    }
}

void Tokenizer::Impl::encode_wpm(std::string_view text, std::vector<int32_t>& out) const {
    // BERT normalisation and pre-tokenisation, as HF's BertNormalizer + BertPreTokenizer:
    // drop NUL, U+FFFD and control/format/unassigned characters, strip accents (NFD
    // without Mn) and lowercase if configured, split on whitespace and isolate
    // punctuation (ASCII symbols included) and CJK ideographs.
    std::vector<std::string> words(1);
    std::vector<uint32_t> expanded;
    for (uint32_t cp0 : utf8_to_codepoints(text)) {
        if (cp0 == 0 || cp0 == kReplacementChar) continue;
        if (cp0 != '\t' && cp0 != '\n' && cp0 != '\r') {
            const Category cat = unicode_category(cp0);
            if (cat == Category::Control || cat == Category::Unassigned) continue;
        }
        expanded.clear();
        if (strip_accents) {
            append_stripped_accents(expanded, cp0);
        } else {
            expanded.push_back(cp0);
        }
        for (uint32_t cp : expanded) {
            if (is_whitespace(cp)) {
                if (!words.back().empty()) words.emplace_back();
                continue;
            }
            const uint32_t c = lowercase ? to_lower(cp) : cp;
            if (is_punctuation(cp) || (cp < 0x7F && is_symbol(cp)) || is_wpm_chinese_char(cp)) {
                if (!words.back().empty()) words.emplace_back();
                utf8_append(words.back(), c);
                words.emplace_back();
            } else {
                utf8_append(words.back(), c);
            }
        }
    }
    constexpr size_t kMaxCharsPerWord = 100;  // HF WordPiece: longer words become [UNK]
    for (const std::string& w : words) {
        if (w.empty()) continue;
        if (w.size() > kMaxCharsPerWord && utf8_to_codepoints(w).size() > kMaxCharsPerWord) {
            if (unk >= 0) out.push_back(unk);
            continue;
        }
        const std::string word = std::string(kSpaceMarker) + w;
        const size_t n = word.size();
        const size_t before = out.size();
        for (size_t i = 0; i < n;) {
            bool matched = false;
            for (size_t j = std::min(n, i + max_token_len + 1); j > i; --j) {
                if (int32_t id = find(std::string_view(word).substr(i, j - i)); id >= 0) {
                    out.push_back(id);
                    i = j;
                    matched = true;
                    break;
                }
            }
            if (!matched) {
                out.resize(before);
                break;
            }
        }
        if (out.size() == before && unk >= 0) out.push_back(unk);
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

std::string Tokenizer::Impl::make_piece(int32_t id) const {
    const TokenData& d = tokens[static_cast<size_t>(id)];
    switch (d.type) {
        case TokenType::Control:
        case TokenType::Unknown:
        case TokenType::UserDefined:
            return d.text;
        case TokenType::Byte:
            if (d.text.size() == 6 && d.text.starts_with("<0x") && d.text.back() == '>' &&
                std::isxdigit(static_cast<unsigned char>(d.text[3])) &&
                std::isxdigit(static_cast<unsigned char>(d.text[4]))) {
                return std::string(1, static_cast<char>(std::stoi(d.text.substr(3, 2), nullptr, 16)));
            }
            return kind == TokenizerKind::Bpe ? std::string() : d.text;
        case TokenType::Normal:
            if (kind == TokenizerKind::Bpe) {
                std::string s;
                const auto& codec = byte_codec();
                for (uint32_t cp : utf8_to_codepoints(d.text)) {
                    if (cp < codec.cp_to_byte.size() && codec.cp_to_byte[cp] >= 0) {
                        s.push_back(static_cast<char>(codec.cp_to_byte[cp]));
                    } else {
                        utf8_append(s, cp);  // not a byte-level character: keep it as is
                    }
                }
                return s;
            }
            return replace_all(d.text, kSpaceMarker, " ");
        case TokenType::Unused:
        case TokenType::Undefined:
            return {};
    }
    return {};
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
    const Impl& t = *impl_;
    const TokenData* d = t.data(id);
    if (!d) return {};
    if (!special && (d->type == TokenType::Control || d->type == TokenType::Unknown)) return {};
    return t.pieces[static_cast<size_t>(id)];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool special) const {
    const Impl& t = *impl_;
    std::string text;
    bool remove_space = t.add_space_prefix;
    for (int32_t id : ids) {
        if (!t.data(id)) continue;
        std::string_view piece;
        const TokenData& d = t.tokens[static_cast<size_t>(id)];
        if (special || (d.type != TokenType::Control && d.type != TokenType::Unknown))
            piece = t.pieces[static_cast<size_t>(id)];
        if (remove_space && !piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
        remove_space = false;
        text.append(piece);
    }
    if (!t.clean_spaces || text.empty()) return text;

    // llama.cpp's clean_spaces passes.
    std::string a;  // " ?", " !", " .", " ,"  ->  "?", "!", ".", ","
    a.reserve(text.size());
    a.push_back(text[0]);
    for (size_t i = 1; i < text.size(); ++i) {
        const char x = text[i];
        if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) a.pop_back();
        a.push_back(x);
    }
    std::string b;  // " ' "  ->  "'"
    b.reserve(a.size());
    b.push_back(a[0]);
    for (size_t i = 1; i < a.size(); ++i) {
        const char x = a[i];
        if (x == '\'' && i + 1 < a.size() && a[i - 1] == ' ' && a[i + 1] == ' ') {
            b.pop_back();
            b.push_back(x);
            ++i;  // drop the following space
            continue;
        }
        b.push_back(x);
    }
    std::string c;  // " 's", " 'm", " 're", " 've"  ->  "'s", ...
    c.reserve(b.size());
    c.push_back(b[0]);
    for (size_t i = 1; i < b.size(); ++i) {
        const char x = b[i];
        if (b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
            const char x1 = b[i + 1];
            const bool two = i + 2 < b.size();
            if (x1 == 's' || x1 == 'm' || (two && ((x1 == 'r' && b[i + 2] == 'e') || (x1 == 'v' && b[i + 2] == 'e'))))
                c.pop_back();
        }
        c.push_back(x);
    }
    return c;
}

// ---------------------------------------------------------------------------------------------
// Accessors

namespace {
std::optional<int32_t> opt(int32_t id) {
    return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
}
const std::string kEmpty;
}  // namespace

TokenizerKind Tokenizer::kind() const {
    return impl_->kind;
}
const std::string& Tokenizer::model_name() const {
    return impl_->model;
}
const std::string& Tokenizer::pre_name() const {
    return impl_->pre;
}
size_t Tokenizer::vocab_size() const {
    return impl_->tokens.size();
}
const std::string& Tokenizer::token_text(int32_t id) const {
    const auto* d = impl_->data(id);
    return d ? d->text : kEmpty;
}
float Tokenizer::token_score(int32_t id) const {
    const auto* d = impl_->data(id);
    return d ? d->score : 0.0f;
}
TokenType Tokenizer::token_type(int32_t id) const {
    const auto* d = impl_->data(id);
    return d ? d->type : TokenType::Undefined;
}
std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
    return opt(impl_->find(text));
}
std::optional<int32_t> Tokenizer::bos() const {
    return opt(impl_->bos);
}
std::optional<int32_t> Tokenizer::eos() const {
    return opt(impl_->eos);
}
std::optional<int32_t> Tokenizer::eot() const {
    return opt(impl_->eot);
}
std::optional<int32_t> Tokenizer::eom() const {
    return opt(impl_->eom);
}
std::optional<int32_t> Tokenizer::unk() const {
    return opt(impl_->unk);
}
std::optional<int32_t> Tokenizer::sep() const {
    return opt(impl_->sep);
}
std::optional<int32_t> Tokenizer::pad() const {
    return opt(impl_->pad);
}
std::optional<int32_t> Tokenizer::mask() const {
    return opt(impl_->mask);
}
std::optional<int32_t> Tokenizer::newline() const {
    return opt(impl_->newline);
}
std::optional<int32_t> Tokenizer::fim_pre() const {
    return opt(impl_->fim_pre);
}
std::optional<int32_t> Tokenizer::fim_suf() const {
    return opt(impl_->fim_suf);
}
std::optional<int32_t> Tokenizer::fim_mid() const {
    return opt(impl_->fim_mid);
}
bool Tokenizer::add_bos() const {
    return impl_->add_bos;
}
bool Tokenizer::add_eos() const {
    return impl_->add_eos;
}
bool Tokenizer::add_space_prefix() const {
    return impl_->add_space_prefix;
}
bool Tokenizer::is_eog(int32_t id) const {
    return std::binary_search(impl_->eog.begin(), impl_->eog.end(), id);
}
std::span<const int32_t> Tokenizer::eog_ids() const {
    return impl_->eog;
}

}  // namespace realm::text
