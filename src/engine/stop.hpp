// Stop handling for streamed generation.
//
// StopMatcher receives the detokenized text chunk by chunk and finds stop strings even when
// they are split across chunks. It releases only text that can no longer be part of a stop
// string: a suffix that is a proper prefix of some stop string is held back until the next
// chunk proves it is not one. When a stop string appears, the text before it is released and
// the stop string itself (and everything after it) is dropped, as OpenAI does.
//
//   StopMatcher m({"END"});
//   m.push("abcE");   // -> {"abc", stopped=false}  ("E" held back)
//   m.push("ND!");    // -> {"", stopped=true, stop_index=0}
//
// Generation combines, per sampled token: end-of-generation tokens (Tokenizer::is_eog, unless
// ignore_eos), max_tokens, stop strings and UTF-8 streaming of the token pieces (a character
// split across tokens is held back until complete).
//
//   Generation g(tokenizer, params);
//   while (!g.done()) {
//       int32_t tok = ...sample...;
//       auto step = g.push(tok);
//       send(step.text);                      // may be empty
//   }
//   finish_reason = to_string(*g.finish_reason());   // "stop" or "length"
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampling.hpp"
#include "text/tokenizer.hpp"
#include "text/utf8.hpp"

namespace realm::engine {

class StopMatcher {
public:
    struct Output {
        std::string text;                      // safe to emit now
        bool stopped = false;                  // a stop string was found: generation must end
        std::optional<size_t> stop_index;      // which stop string (index into the list)
    };

    StopMatcher() = default;
    // Empty stop strings are ignored (SamplingParams::validate rejects them anyway).
    explicit StopMatcher(std::vector<std::string> stops);

    // Feeds the next chunk. After a stop, further pushes return {"", true, index}.
    // When several complete stop strings are in view, the one starting first wins (ties: the
    // first listed). A stop string acts as soon as it is complete: a longer one that started
    // earlier but is still incomplete does not delay it (llama-server behaves the same).
    Output push(std::string_view chunk);
    // End of stream without a stop: releases the held-back text.
    std::string flush();

    bool stopped() const { return stopped_; }
    // Bytes currently held back.
    size_t pending() const { return held_.size(); }

private:
    std::vector<std::string> stops_;
    std::string held_;
    bool stopped_ = false;
    std::optional<size_t> stop_index_;
};

enum class FinishReason { Stop, Length };
// "stop" or "length", as OpenAI's finish_reason.
const char* to_string(FinishReason r);

class Generation {
public:
    struct Step {
        std::string text;                    // text to emit for this token (may be empty)
        std::optional<FinishReason> finish;  // set when generation must end now
    };

    // The tokenizer must outlive the Generation. `params` should have been validated; only
    // max_tokens, stop and ignore_eos are used. `special`: render control tokens' text
    // (llama-server's default is not to).
    Generation(const text::Tokenizer& tokenizer, const SamplingParams& params, bool special = false);

    // Accounts for one sampled token and returns the text that is now safe to emit.
    // After the end, returns {"", finish_reason} and counts nothing.
    Step push(int32_t token);

    // Ends generation for an outside reason (context full: Length, cancelled): releases the
    // held-back text and sets the finish reason to `reason` (Stop if the released text completes
    // a stop string). Does nothing once finished. Returns the released text.
    std::string finish(FinishReason reason = FinishReason::Length);

    bool done() const { return finish_.has_value(); }
    std::optional<FinishReason> finish_reason() const { return finish_; }
    size_t tokens() const { return n_tokens_; }   // tokens pushed (EOG included), for usage
    const std::string& text() const { return text_; }  // everything emitted so far
    std::optional<size_t> stop_index() const { return stop_index_; }  // matched stop string

private:
    std::string release_all();

    const text::Tokenizer* tok_;
    std::optional<int32_t> max_tokens_;
    bool ignore_eos_ = false;
    bool special_ = false;
    text::Utf8Streamer utf8_;
    StopMatcher stop_;
    size_t n_tokens_ = 0;
    std::string text_;
    std::optional<FinishReason> finish_;
    std::optional<size_t> stop_index_;
};

}  // namespace realm::engine
