// The Wasmtime host: one Sandbox (engine, linker, epoch ticker, module cache) per process; one Store and one
// instance per request, discarded afterwards. The guest ABI is documented in docs/GUEST_ABI.md.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/result.hpp"
#include "sandbox/backend.hpp"

namespace realm::sandbox {

// Process-wide settings. Changing any field that affects code generation changes the module cache key.
struct EngineConfig {
    bool pooling = true;                           // pooling instance allocator (fast instantiation)
    uint32_t max_instances = 64;                   // pool size: concurrently live requests
    uint64_t max_memory_bytes = 256ull << 20;      // largest linear memory any tenant may be given
    uint32_t max_table_elements = 20000;           // largest table any guest may have
    size_t max_core_instance_size = 1u << 20;      // pool: VM context size of one instance
    size_t max_wasm_stack = 512u << 10;            // wasm stack bytes per request (deep recursion traps)
    std::chrono::milliseconds epoch_tick{1};       // granularity of request deadlines
    bool fuel = false;                             // enable fuel metering (per-request fuel limits)
    std::filesystem::path cache_dir;               // compiled modules on disk; empty: memory only
};

// Per-tenant limits for one request.
struct Limits {
    uint64_t memory_bytes = 64ull << 20;           // linear memory cap (clamped to EngineConfig::max_memory_bytes)
    uint32_t table_elements = 10000;
    std::chrono::milliseconds time_budget{5000};   // wall-clock deadline for the whole request
    std::optional<uint64_t> fuel;                  // only with EngineConfig::fuel
    uint32_t max_request_bytes = 4u << 20;
    uint32_t max_response_bytes = 4u << 20;
    uint32_t max_emits = 100000;                   // emit calls per request
    uint64_t max_emit_bytes = 16ull << 20;         // total emitted bytes per request
    uint32_t max_log_lines = 1000;                 // further log lines are dropped (REALM_E_LIMIT)
    uint32_t max_log_line_bytes = 4096;            // longer lines are truncated
    uint32_t max_models = 16;                      // model handles per request
    uint32_t max_sequences = 16;                   // sequences opened per request (closed ones count)
    uint32_t max_tokens_per_call = 1u << 20;       // tokens in one feed/detokenize/tokenize output
};

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

struct Request {
    std::string tenant;
    std::string request_id;
    std::string body_json;                          // handed to the guest as-is
    std::vector<std::string> allowed_models;        // model names this tenant may open
    Limits limits;
    std::shared_ptr<std::atomic<bool>> cancelled;   // set by the server when the client goes away
    std::function<void(std::string_view)> on_chunk; // streamed text (realm_emit)
    std::function<void(LogLevel, std::string_view)> on_log;  // guest log lines; default: spdlog
};

enum class ErrorKind {
    none,
    load,            // module invalid / missing or mistyped import or export
    instantiate,     // instantiation failed (e.g. pool exhausted)
    abi_version,     // realm_abi_version() returned something other than 1
    trap,            // the guest trapped (unreachable, out-of-bounds access, ...)
    deadline,        // the time budget ran out
    fuel,            // the fuel budget ran out
    stack_overflow,  // wasm stack exhausted
    memory_limit,    // tried to grow memory/table beyond the tenant's cap
    emit_limit,      // emitted too many chunks/bytes
    guest_error,     // realm_init / realm_handle_request returned a negative code, or alloc failed
    no_response,     // realm_handle_request returned 0 without writing a response
    invalid_request, // the host refused the request before running the guest (e.g. too large)
    cancelled,       // the client cancelled and the guest stopped without a response
    host,            // internal host error (a bug or the backend threw)
};

std::string_view to_string(ErrorKind kind);

struct RequestStats {
    double instantiate_us = 0;   // store creation + instantiation
    double run_us = 0;           // _initialize + realm_init + realm_handle_request
    uint64_t fuel_consumed = 0;
    uint32_t emits = 0;
    uint64_t emit_bytes = 0;
    uint32_t host_calls = 0;
};

struct Outcome {
    ErrorKind error = ErrorKind::none;
    std::string message;         // for errors: what happened, naming the function/limit involved
    std::string response;        // the JSON the guest wrote
    RequestStats stats;
    bool ok() const { return error == ErrorKind::none; }
};

class GuestModule;  // compiled, import/export-checked module (opaque)

struct LoadInfo {
    std::string hash;            // sha256 of the module bytes, hex
    enum class Source { memory, disk, compiled } source = Source::compiled;
};

class Sandbox {
public:
    static Result<std::unique_ptr<Sandbox>> create(EngineConfig config, std::shared_ptr<Backend> backend);
    ~Sandbox();
    Sandbox(const Sandbox&) = delete;
    Sandbox& operator=(const Sandbox&) = delete;

    // Compiles (or fetches from the memory/disk cache) a module: binary wasm, or WAT text. Checks every import
    // against ABI v1 and every required export's type; errors name the offending import/export.
    Result<std::shared_ptr<const GuestModule>> load(std::span<const uint8_t> bytes, LoadInfo* info = nullptr);
    Result<std::shared_ptr<const GuestModule>> load_file(const std::filesystem::path& path, LoadInfo* info = nullptr);

    // Runs one request in a fresh instance. Thread-safe. Never throws; every failure is in the Outcome.
    Outcome run(const GuestModule& module, const Request& request);

    const EngineConfig& config() const;
    size_t cached_modules() const;
    void clear_memory_cache();

    struct Impl;  // defined in sandbox.cpp; only create() can make one
    explicit Sandbox(std::unique_ptr<Impl> impl);

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace realm::sandbox
