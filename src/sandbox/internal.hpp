// Internals shared by sandbox.cpp and host_abi.cpp. Not part of the public interface.
#pragma once

#include <wasi.h>
#include <wasm.h>
#include <wasmtime.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/backend.hpp"
#include "sandbox/sandbox.hpp"

extern "C" {
// From the shim crate (wasmtime/shim/src/lib.rs): a store limiter whose grow failures trap.
void realm_store_limiter_trapping(wasmtime_store_t* store, int64_t memory_size, int64_t table_elements,
                                  int64_t instances, int64_t tables, int64_t memories);
// From the shim crate: engine creation that returns an error instead of aborting the process.
wasmtime_error_t* realm_engine_new(wasm_config_t* config, wasm_engine_t** out);
}

namespace realm::sandbox {

// ---- RAII for the C API ------------------------------------------------------------------------------
struct ErrorDeleter { void operator()(wasmtime_error_t* e) const { wasmtime_error_delete(e); } };
struct TrapDeleter { void operator()(wasm_trap_t* t) const { wasm_trap_delete(t); } };
struct StoreDeleter { void operator()(wasmtime_store_t* s) const { wasmtime_store_delete(s); } };
struct ModuleDeleter { void operator()(wasmtime_module_t* m) const { wasmtime_module_delete(m); } };
struct InstancePreDeleter { void operator()(wasmtime_instance_pre_t* p) const { wasmtime_instance_pre_delete(p); } };
using ErrorPtr = std::unique_ptr<wasmtime_error_t, ErrorDeleter>;
using TrapPtr = std::unique_ptr<wasm_trap_t, TrapDeleter>;
using StorePtr = std::unique_ptr<wasmtime_store_t, StoreDeleter>;
using ModulePtr = std::unique_ptr<wasmtime_module_t, ModuleDeleter>;
using InstancePrePtr = std::unique_ptr<wasmtime_instance_pre_t, InstancePreDeleter>;

std::string error_message(const wasmtime_error_t* e);
std::string trap_message(const wasm_trap_t* t);

// ---- ABI v1 description ------------------------------------------------------------------------------
enum class V : uint8_t { i32, i64, f32 };
struct HostFunction {
    const char* name;
    std::vector<V> params;
    std::vector<V> results;
    wasmtime_func_unchecked_callback_t callback;
};
// Every import of module "realm" in ABI v1 (host_abi.cpp).
const std::vector<HostFunction>& abi_v1_imports();

struct RequiredExport {
    const char* name;
    std::vector<V> params;
    std::vector<V> results;
};
const std::vector<RequiredExport>& abi_v1_exports();

// ---- Per-request state, reachable from every host function through the store's data pointer -------------
struct ModelSlot {
    std::shared_ptr<Model> model;
    std::string name;
};
struct SequenceSlot {
    std::unique_ptr<Sequence> seq;
    std::shared_ptr<Model> model;   // keeps the model alive while the sequence is
    bool closed = false;
};

struct RequestContext {
    const Request* request = nullptr;
    Backend* backend = nullptr;
    std::optional<wasmtime_memory_t> memory;  // set right after instantiation
    std::chrono::steady_clock::time_point deadline;
    uint16_t handle_tag = 1;                   // per-request random tag inside every handle (1..0x7fff)

    std::string last_error;
    std::optional<std::string> response;
    std::vector<ModelSlot> models;
    std::vector<SequenceSlot> sequences;
    uint32_t log_lines = 0;
    RequestStats stats;

    // Set by a host function that ends the request (trap) for a host-side reason.
    ErrorKind fatal = ErrorKind::none;
    std::string fatal_message;
};

}  // namespace realm::sandbox
