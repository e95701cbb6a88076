// `realm guest run GUEST.wasm --model M --request JSON`: one request through a guest, on a real model.
#pragma once

#include <cstdint>
#include <string>

#include "model/model.hpp"

namespace realm::cli {

struct GuestRunOptions {
    std::string guest;          // .wasm (or .wat) file
    std::string model;          // GGUF file
    std::string name;           // model name for the guest; default: the request's "model", else the file stem
    std::string request;        // JSON text, or @FILE
    std::string chat_template;  // Jinja file overriding the model's template
    uint32_t n_ctx = 0;         // 0: min(training context, 4096)
    uint32_t n_threads = 0;     // 0: all cores
    model::Weights weights = model::Weights::Rows16;
    int64_t timeout_ms = 600000;
};

int guest_run(const GuestRunOptions& opts);

}  // namespace realm::cli
