// Internal: the regex pre-tokenizers of byte-level BPE vocabularies, selected by
// tokenizer.ggml.pre. Each variant is a sequence of split stages; every stage splits
// each piece from the previous stage into matches and the gaps between them
// (HF tokenizers' "Isolated" Split behaviour), with the stage regexes implemented
// by hand instead of a regex engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace realm::text::detail {

using CpPredicate = bool (*)(uint32_t);

struct PreStage {
    enum class Kind {
        Gpt2,        // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
        Llama3,      // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}|
                     // ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
        Run,         // [class]+
        Single,      // [class]
        WsOptRun,    // \s?[class]+
        TrailingWs,  // \s+$
        Digits3,     // [0-9][0-9][0-9]
    };
    Kind kind;
    CpPredicate pred = nullptr;
    size_t max_digits = 3;  // Llama3 only
};

struct PreTokenizerConfig {
    std::vector<PreStage> stages;
    bool clean_spaces = true;    // decode-time clean-up (llama.cpp clean_spaces)
    bool ignore_merges = false;  // a word that is a whole token is emitted as is
};

// The configuration for a tokenizer.ggml.pre name; nullopt for unsupported names.
std::optional<PreTokenizerConfig> pre_tokenizer_config(std::string_view pre);

// Splits code points into words; returns the word lengths (in code points), summing
// to cps.size().
std::vector<size_t> pre_tokenize(const std::vector<PreStage>& stages, const std::vector<uint32_t>& cps);

}  // namespace realm::text::detail
