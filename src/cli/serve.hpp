// `realm serve`: the OpenAI-compatible HTTP server over SQLite-backed tenants and the embedded default guest.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/model.hpp"

namespace realm::cli {

struct ServeOptions {
    std::string host = "127.0.0.1";
    uint16_t port = 8080;                  // 0: any free port (the chosen one is printed)
    std::string data_dir;                  // empty: $REALM_DATA_DIR, else ~/.local/share/realm
    std::vector<std::string> models;       // NAME=PATH; empty: smollm2 = the SmolLM2 file if found
    uint32_t n_threads = 0;                // engine threads per model; 0: all cores
    model::Weights weights = model::Weights::Rows16;  // where every model's matrices are read from
    uint32_t n_ctx = 2048;                 // context per sequence
    std::string admin_key;                 // empty: $REALM_ADMIN_KEY (if set)
    uint64_t max_body_bytes = 4ull << 20;
    uint32_t max_concurrent = 16;          // requests running in guests at once
    uint32_t max_queue = 64;               // admitted requests waiting; beyond: 503
    uint32_t shutdown_grace_s = 10;
};

int serve(const ServeOptions& opts);

// The default guest module (guest/default), embedded at build time.
std::span<const uint8_t> default_guest_wasm();

}  // namespace realm::cli
