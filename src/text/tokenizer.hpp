// Tokenizers built from GGUF metadata (tokenizer.ggml.*), compatible with llama.cpp:
//
//   SPM        tokenizer.ggml.model == "llama": score-driven merges, ▁ for spaces,
//              byte fallback through <0xXX> tokens, optional add_space_prefix.
//   BPE        tokenizer.ggml.model == "gpt2": GPT-2 byte-level BPE with merge ranks,
//              preceded by the pre-tokenizer named by tokenizer.ggml.pre.
//   WordPiece  tokenizer.ggml.model == "bert": BERT normalisation + greedy longest match.
//
//   auto tok = realm::text::Tokenizer::from_metadata(file.metadata());
//   if (!tok) { report(tok.error().message); return; }
//   std::vector<int32_t> ids = tok->encode("Hello", /*add_special=*/true, /*parse_special=*/false);
//   std::string text = tok->decode(ids);
//
// encode() accepts any bytes (invalid UTF-8 is byte-fallback encoded or replaced by
// U+FFFD, as llama.cpp does); decode()/token_to_piece() skip out-of-range ids.
// A Tokenizer is immutable after construction and safe to share between threads.
//
// Output matches llama.cpp token for token (its test vectors, SmolLM2, Gemma 3), with
// two deliberate exceptions where llama.cpp departs from the HF tokenizers the models
// were trained with and we follow HF: WordPiece strips accents by full NFD minus Mn
// marks (llama.cpp keeps only the first code point of the decomposition, losing Hangul
// jamo and dropping spacing marks), and the deepseek-llm/-coder bracket classes match
// non-ASCII whitespace such as U+3000 like any other code point in their ranges.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/result.hpp"
#include "gguf/value.hpp"

namespace realm::text {

enum class TokenizerKind { Spm, Bpe, WordPiece };

// tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
};

class Tokenizer {
public:
    // Reads tokenizer.ggml.{model,pre,tokens,scores,token_type,merges,*_token_id,
    // add_bos_token,add_eos_token,add_space_prefix,...}. Errors: missing or mistyped
    // token list, scores/types arrays shorter than the token list, malformed merges,
    // unknown model or pre-tokenizer.
    static Result<Tokenizer> from_metadata(const gguf::Metadata& md);

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;
    ~Tokenizer();

    // add_special: prepend BOS / append EOS (or CLS/SEP for WordPiece) as the model asks.
    // parse_special: match control tokens (e.g. "<|im_start|>") written in the text;
    // user-defined tokens are always matched.
    std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

    // The bytes a token stands for (may be a partial UTF-8 character). Control and
    // unknown tokens render as their text only when `special`. Invalid id: "".
    std::string token_to_piece(int32_t id, bool special = true) const;

    // Concatenated pieces with llama.cpp's clean-ups (leading space of SPM's space
    // prefix removed, BPE clean_spaces). Invalid ids are skipped. May contain
    // invalid UTF-8 if the ids split a character; see Utf8Streamer.
    std::string decode(std::span<const int32_t> ids, bool special = true) const;

    TokenizerKind kind() const;
    const std::string& model_name() const;  // tokenizer.ggml.model
    const std::string& pre_name() const;    // tokenizer.ggml.pre ("" when absent)
    size_t vocab_size() const;
    bool valid(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < vocab_size(); }

    // Token data; for invalid ids: "", 0.0f, TokenType::Undefined.
    const std::string& token_text(int32_t id) const;
    float token_score(int32_t id) const;
    TokenType token_type(int32_t id) const;
    bool is_control(int32_t id) const { return token_type(id) == TokenType::Control; }
    // Exact match of the whole string against the vocabulary.
    std::optional<int32_t> find_token(std::string_view text) const;

    std::optional<int32_t> bos() const;
    std::optional<int32_t> eos() const;
    std::optional<int32_t> eot() const;
    std::optional<int32_t> eom() const;
    std::optional<int32_t> unk() const;
    std::optional<int32_t> sep() const;
    std::optional<int32_t> pad() const;
    std::optional<int32_t> mask() const;
    std::optional<int32_t> newline() const;
    std::optional<int32_t> fim_pre() const;
    std::optional<int32_t> fim_suf() const;
    std::optional<int32_t> fim_mid() const;
    bool add_bos() const;
    bool add_eos() const;
    bool add_space_prefix() const;
    // End of generation: EOS, EOT, EOM and the other end-of-turn tokens llama.cpp recognises.
    bool is_eog(int32_t id) const;
    std::span<const int32_t> eog_ids() const;

    struct Impl;

private:
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace realm::text
