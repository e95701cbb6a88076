// `realm run`, `realm chat` and `realm tokenize`: text generation from the command line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/sampling.hpp"
#include "model/model.hpp"

namespace realm::cli {

struct GenerateOptions {
    std::string model;
    std::string prompt;
    std::string system;          // optional system message (--chat / chat)
    std::string chat_template;   // file overriding the model's template
    bool chat = false;           // apply the chat template to the prompt as a user turn
    uint32_t n_ctx = 0;          // 0: min(training context, 4096)
    uint32_t n_threads = 0;      // 0: all cores
    model::Weights weights = model::Weights::Rows16;
    bool verbose_prompt = false;  // print the rendered prompt and its tokens to stderr
    engine::SamplingParams sampling;
};

int run(GenerateOptions opts);
int chat(GenerateOptions opts);

struct TokenizeOptions {
    std::string model;
    std::string text;
    bool pieces = false;       // print "id 'piece'" per line
    bool no_bos = false;       // do not add BOS/EOS even if the model asks for them
    bool parse_special = true;  // recognise special-token text such as <|im_start|>
};
int tokenize(const TokenizeOptions& opts);

}  // namespace realm::cli
