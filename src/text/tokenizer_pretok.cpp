#include "text/tokenizer_pretok.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "text/unicode.hpp"
#include "text/utf8.hpp"

namespace realm::text::detail {

namespace {

bool is_crlf(uint32_t c) {
    return c == '\r' || c == '\n';
}
// [^\s\p{L}\p{N}]
bool is_other(uint32_t c) {
    return !is_whitespace(c) && !is_letter(c) && !is_number(c);
}
bool is_ascii_digit(uint32_t c) {
    return c >= '0' && c <= '9';
}
// [\p{P}\$\+<=>\^~\|]
bool is_default_punct(uint32_t c) {
    return is_punctuation(c) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' ||
           c == '|';
}
// [\p{P}\$\+<=>\^~\|`]
bool is_falcon_punct(uint32_t c) {
    return is_default_punct(c) || c == '`';
}

using Range = std::pair<uint32_t, uint32_t>;

// A bracket class of a reference regex as sorted, inclusive code point ranges. The
// ranges are plain code points, as HF's regex engine sees them. (llama.cpp runs these
// classes through std::wregex on text whose non-ASCII whitespace was replaced by U+000B,
// so there e.g. U+3000 never matches "[\u0800-\u4E00]"; we follow HF.)
template <size_t N>
bool in_ranges(const std::array<Range, N>& ranges, uint32_t c) {
    auto it = std::upper_bound(ranges.begin(), ranges.end(), Range{c, UINT32_MAX});
    return it != ranges.begin() && c <= std::prev(it)->second;
}

template <size_t N>
constexpr std::array<Range, N> sorted(std::array<Range, N> r) {
    std::sort(r.begin(), r.end());
    return r;
}

// deepseek-llm's letter class, from its tokenizer.json ("[A-Za-z\u00B5\u00C0-\u00D6...]").
bool is_ds_letter(uint32_t c) {
    static constexpr auto kRanges = sorted(std::array<Range, 87>{{
        {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},       {0xD8, 0xF6},
        {0xF8, 0x1BA},      {0x1BC, 0x1BF},     {0x1C4, 0x293},     {0x295, 0x2AF},     {0x370, 0x373},
        {0x376, 0x376},     {0x377, 0x377},     {0x37B, 0x37D},     {0x37F, 0x37F},     {0x386, 0x386},
        {0x388, 0x38A},     {0x38C, 0x38C},     {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},
        {0x48A, 0x52F},     {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
        {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},   {0x1D79, 0x1D9A},
        {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},   {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},
        {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},   {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},
        {0x1FB6, 0x1FBC},   {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
        {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},   {0x2102, 0x2102},
        {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},   {0x2119, 0x211D},   {0x2124, 0x2124},
        {0x2126, 0x2126},   {0x2128, 0x2128},   {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},
        {0x213C, 0x213F},   {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2183},   {0x2184, 0x2184},
        {0x2C00, 0x2C7B},   {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF2},   {0x2CF3, 0x2CF3},
        {0xA640, 0xA66D},   {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
        {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},   {0xFF41, 0xFF5A},
        {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2},
        {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
    }});
    return in_ranges(kRanges, c);
}
// deepseek-llm's punctuation class: [!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]
bool is_ds_punct(uint32_t c) {
    static constexpr auto kRanges = sorted(std::array<Range, 6>{{
        {0x21, 0x2F},
        {0x3A, 0x7E},
        {0xFF01, 0xFF0F},
        {0xFF1A, 0xFF5E},
        {0x2018, 0x201F},
        {0x3000, 0x3002},
    }});
    return in_ranges(kRanges, c);
}
// The CJK class of deepseek-llm and deepseek-coder: [\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]
bool is_ds_cjk(uint32_t c) {
    return (c >= 0x800 && c <= 0x9FA5) || (c >= 0xAC00 && c <= 0xD7FF);
}

struct Span {
    const uint32_t* c;
    size_t end;  // matches may not look past `end` (the current piece's end)
    size_t run(size_t p, CpPredicate pred) const {
        while (p < end && pred(c[p])) ++p;
        return p;
    }
};

// Length of the whitespace match of the GPT-2 family at `pos` (c[pos] is whitespace):
// \s+(?!\S) leaves the last space for the next word unless the run ends the piece.
size_t match_ws_tail(const Span& s, size_t pos) {
    const size_t n = s.run(pos, is_whitespace) - pos;
    if (pos + n == s.end || n == 1) return n;
    return n - 1;
}

size_t match_gpt2(const Span& s, size_t pos) {
    const uint32_t cp = s.c[pos];
    if (cp == '\'' && pos + 1 < s.end) {
        const uint32_t n1 = s.c[pos + 1];
        if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') return 2;
        if (pos + 2 < s.end) {
            const uint32_t n2 = s.c[pos + 2];
            if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) return 3;
        }
    }
    for (CpPredicate pred : {is_letter, is_number, is_other}) {
        if (pred(cp)) return s.run(pos, pred) - pos;
        if (cp == ' ' && pos + 1 < s.end && pred(s.c[pos + 1])) return s.run(pos + 1, pred) - pos;
    }
    if (is_whitespace(cp)) return match_ws_tail(s, pos);
    return 1;
}

uint32_t ascii_lower(uint32_t c) {
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

size_t match_llama3(const Span& s, size_t pos, size_t max_digits) {
    const uint32_t cp = s.c[pos];
    if (cp == '\'' && pos + 1 < s.end) {
        const uint32_t n1 = ascii_lower(s.c[pos + 1]);
        if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') return 2;
        if (pos + 2 < s.end) {
            const uint32_t n2 = ascii_lower(s.c[pos + 2]);
            if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) return 3;
        }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (is_letter(cp)) return s.run(pos, is_letter) - pos;
    if (!is_crlf(cp) && !is_number(cp) && pos + 1 < s.end && is_letter(s.c[pos + 1])) {
        return s.run(pos + 1, is_letter) - pos;
    }
    // \p{N}{1,max}
    if (is_number(cp)) return std::min(s.run(pos, is_number) - pos, max_digits);
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    size_t start = pos;
    if (cp == ' ' && pos + 1 < s.end && is_other(s.c[pos + 1])) start = pos + 1;
    if (is_other(s.c[start])) return s.run(s.run(start, is_other), is_crlf) - pos;
    // \s*[\r\n]+ : up to and including the last CR/LF of the whitespace run
    const size_t ws_end = s.run(pos, is_whitespace);
    for (size_t p = ws_end; p > pos; --p) {
        if (is_crlf(s.c[p - 1])) return p - pos;
    }
    if (ws_end > pos) return match_ws_tail(s, pos);
    return 1;
}

size_t match_stage(const PreStage& st, const Span& s, size_t pos) {
    const uint32_t cp = s.c[pos];
    switch (st.kind) {
        case PreStage::Kind::Gpt2:
            return match_gpt2(s, pos);
        case PreStage::Kind::Llama3:
            return match_llama3(s, pos, st.max_digits);
        case PreStage::Kind::Run:
            return st.pred(cp) ? s.run(pos, st.pred) - pos : 0;
        case PreStage::Kind::Single:
            return st.pred(cp) ? 1 : 0;
        case PreStage::Kind::WsOptRun:
            if (is_whitespace(cp) && pos + 1 < s.end && st.pred(s.c[pos + 1])) return s.run(pos + 1, st.pred) - pos;
            return st.pred(cp) ? s.run(pos, st.pred) - pos : 0;
        case PreStage::Kind::Digits3:
            return (pos + 3 <= s.end && is_ascii_digit(cp) && is_ascii_digit(s.c[pos + 1]) &&
                    is_ascii_digit(s.c[pos + 2]))
                       ? 3
                       : 0;
        case PreStage::Kind::TrailingWs:
            return 0;  // handled in split_piece
    }
    return 0;
}

void split_piece(const PreStage& st, const std::vector<uint32_t>& cps, size_t begin, size_t end,
                 std::vector<size_t>& out) {
    if (st.kind == PreStage::Kind::TrailingWs) {
        size_t p = end;
        while (p > begin && is_whitespace(cps[p - 1])) --p;
        if (p > begin) out.push_back(p - begin);
        if (end > p) out.push_back(end - p);
        return;
    }
    const Span s{cps.data(), end};
    size_t gap = begin;
    for (size_t pos = begin; pos < end;) {
        const size_t n = match_stage(st, s, pos);
        if (n == 0) {
            ++pos;
            continue;
        }
        if (pos > gap) out.push_back(pos - gap);
        out.push_back(n);
        pos += n;
        gap = pos;
    }
    if (end > gap) out.push_back(end - gap);
}

PreStage stage(PreStage::Kind k, CpPredicate pred = nullptr) {
    return PreStage{k, pred, 3};
}

}  // namespace

std::vector<size_t> pre_tokenize(const std::vector<PreStage>& stages, const std::vector<uint32_t>& cps) {
    std::vector<size_t> pieces;
    if (cps.empty()) return pieces;
    pieces.push_back(cps.size());
    std::vector<size_t> next;
    for (const auto& st : stages) {
        next.clear();
        next.reserve(pieces.size() * 2);
        size_t begin = 0;
        for (size_t len : pieces) {
            split_piece(st, cps, begin, begin + len, next);
            begin += len;
        }
        pieces.swap(next);
    }
    return pieces;
}

std::optional<PreTokenizerConfig> pre_tokenizer_config(std::string_view pre) {
    using K = PreStage::Kind;
    auto is_any = [&](std::initializer_list<std::string_view> names) {
        return std::find(names.begin(), names.end(), pre) != names.end();
    };
    PreTokenizerConfig cfg;
    if (pre.empty() || pre == "default") {
        cfg.stages = {stage(K::Run, is_default_punct), stage(K::Gpt2), stage(K::Run, is_number), stage(K::Digits3)};
    } else if (is_any({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"})) {
        cfg.stages = {stage(K::Llama3)};
        cfg.ignore_merges = true;
    } else if (is_any({"dbrx", "smaug-bpe", "glm4", "chatglm-bpe"})) {
        cfg.stages = {stage(K::Llama3)};
    } else if (is_any({"qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan"})) {
        PreStage st = stage(K::Llama3);
        st.max_digits = 1;
        cfg.stages = {st};
        cfg.clean_spaces = pre == "stablelm2" || pre == "hunyuan";
    } else if (pre == "deepseek-llm") {
        cfg.stages = {stage(K::Single, is_crlf), stage(K::WsOptRun, is_ds_letter), stage(K::WsOptRun, is_ds_punct),
                      stage(K::TrailingWs),      stage(K::Run, is_ds_cjk),         stage(K::Run, is_number)};
        cfg.clean_spaces = false;
    } else if (pre == "deepseek-coder") {
        cfg.stages = {stage(K::Single, is_crlf), stage(K::WsOptRun, is_letter), stage(K::WsOptRun, is_punctuation),
                      stage(K::Run, is_ds_cjk), stage(K::Single, is_number)};
        cfg.clean_spaces = false;
    } else if (pre == "falcon") {
        cfg.stages = {stage(K::Run, is_falcon_punct), stage(K::Gpt2), stage(K::Digits3)};
    } else if (is_any({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva"})) {
        cfg.stages = {stage(K::Single, is_number), stage(K::Gpt2)};
        cfg.clean_spaces = !(pre == "command-r" || pre == "smollm");
    } else if (is_any({"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "mpt", "olmo",
                       "jais", "trillion", "exaone4", "a.x-4.0", "mellum", "modern-bert", "jina-v1-en", "jina-v2-code",
                       "roberta-bpe"})) {
        cfg.stages = {stage(K::Gpt2)};
    } else {
        return std::nullopt;
    }
    return cfg;
}

}  // namespace realm::text::detail
