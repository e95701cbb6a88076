// Engine, linker, epoch ticker, module cache and the per-request lifecycle.
#include "sandbox/sandbox.hpp"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include "../../guest/include/realm_guest.h"
#include "sandbox/internal.hpp"

namespace realm::sandbox {

// ---- small helpers ---------------------------------------------------------------------------------------

std::string error_message(const wasmtime_error_t* e) {
    wasm_name_t msg;
    wasmtime_error_message(e, &msg);
    std::string s(msg.data, msg.size);
    wasm_byte_vec_delete(&msg);
    return s;
}

std::string trap_message(const wasm_trap_t* t) {
    wasm_message_t msg;
    wasm_trap_message(t, &msg);
    std::string s(msg.data, msg.size);
    wasm_byte_vec_delete(&msg);
    while (!s.empty() && s.back() == '\0') s.pop_back();
    return s;
}

std::string_view to_string(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::none: return "none";
        case ErrorKind::load: return "load";
        case ErrorKind::instantiate: return "instantiate";
        case ErrorKind::abi_version: return "abi_version";
        case ErrorKind::trap: return "trap";
        case ErrorKind::deadline: return "deadline";
        case ErrorKind::fuel: return "fuel";
        case ErrorKind::stack_overflow: return "stack_overflow";
        case ErrorKind::memory_limit: return "memory_limit";
        case ErrorKind::emit_limit: return "emit_limit";
        case ErrorKind::guest_error: return "guest_error";
        case ErrorKind::no_response: return "no_response";
        case ErrorKind::invalid_request: return "invalid_request";
        case ErrorKind::cancelled: return "cancelled";
        case ErrorKind::host: return "host";
    }
    return "unknown";
}

namespace {

using Clock = std::chrono::steady_clock;
using Digest = std::array<uint8_t, 32>;

Digest sha256(std::span<const uint8_t> data) {
    Digest d{};
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr);
    return d;
}
Digest sha256(std::string_view s) { return sha256(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size())); }

std::string hex(std::span<const uint8_t> d) {
    static constexpr char k[] = "0123456789abcdef";
    std::string s;
    s.reserve(d.size() * 2);
    for (uint8_t b : d) {
        s.push_back(k[b >> 4]);
        s.push_back(k[b & 15]);
    }
    return s;
}

// Wasmtime messages carry a multi-line wasm backtrace followed by "Caused by:" and numbered causes; keep the
// causes ("memory fault at ...; wasm trap: out of bounds memory access") on one line.
std::string condense(const std::string& msg) {
    const auto pos = msg.find("Caused by:");
    if (pos == std::string::npos) return msg.substr(0, msg.find('\n'));
    std::string out;
    size_t i = pos + 10;
    while (i < msg.size()) {
        size_t e = msg.find('\n', i);
        if (e == std::string::npos) e = msg.size();
        std::string line = msg.substr(i, e - i);
        i = e + 1;
        const auto b = line.find_first_not_of(" \t0123456789:");
        if (b == std::string::npos) continue;
        if (!out.empty()) out += "; ";
        out += line.substr(b);
    }
    return out;
}

const char* vname(V v) { return v == V::i32 ? "i32" : v == V::i64 ? "i64" : "f32"; }
wasm_valkind_t vkind(V v) { return v == V::i32 ? WASM_I32 : v == V::i64 ? WASM_I64 : WASM_F32; }

std::string sig(const std::vector<V>& params, const std::vector<V>& results) {
    std::string s = "(";
    for (size_t i = 0; i < params.size(); ++i) s += (i ? ", " : "") + std::string(vname(params[i]));
    s += ") -> (";
    for (size_t i = 0; i < results.size(); ++i) s += (i ? ", " : "") + std::string(vname(results[i]));
    return s + ")";
}

std::string sig(const wasm_functype_t* ft) {
    auto kinds = [](const wasm_valtype_vec_t* v) {
        std::string s;
        for (size_t i = 0; i < v->size; ++i) {
            const wasm_valkind_t k = wasm_valtype_kind(v->data[i]);
            s += (i ? ", " : "");
            s += k == WASM_I32 ? "i32" : k == WASM_I64 ? "i64" : k == WASM_F32 ? "f32" : k == WASM_F64 ? "f64" : "ref";
        }
        return s;
    };
    return "(" + kinds(wasm_functype_params(ft)) + ") -> (" + kinds(wasm_functype_results(ft)) + ")";
}

bool same_sig(const wasm_functype_t* ft, const std::vector<V>& params, const std::vector<V>& results) {
    auto eq = [](const wasm_valtype_vec_t* v, const std::vector<V>& want) {
        if (v->size != want.size()) return false;
        for (size_t i = 0; i < v->size; ++i)
            if (wasm_valtype_kind(v->data[i]) != vkind(want[i])) return false;
        return true;
    };
    return eq(wasm_functype_params(ft), params) && eq(wasm_functype_results(ft), results);
}

wasm_functype_t* make_functype(const std::vector<V>& params, const std::vector<V>& results) {
    auto vec = [](const std::vector<V>& vs) {
        wasm_valtype_vec_t out;
        wasm_valtype_vec_new_uninitialized(&out, vs.size());
        for (size_t i = 0; i < vs.size(); ++i) out.data[i] = wasm_valtype_new(vkind(vs[i]));
        return out;
    };
    wasm_valtype_vec_t p = vec(params), r = vec(results);
    return wasm_functype_new(&p, &r);  // takes ownership of both vectors
}

// ---- on-disk format of a compiled module ------------------------------------------------------------------
//   magic "REALMCW1" | sha256(module bytes) | sha256(engine key) | sha256(payload) | u64 payload size | payload
// The payload is wasmtime's own serialization. We only ever hand wasmtime a payload whose hash matches the
// header we wrote, for the module hash and engine key we expect (so a truncated, corrupted or foreign file is
// recompiled, never loaded). The directory is created 0700: whoever can write there can run native code.
constexpr char kMagic[8] = {'R', 'E', 'A', 'L', 'M', 'C', 'W', '1'};
constexpr size_t kHeader = 8 + 32 * 3 + 8;

}  // namespace

class GuestModule {
public:
    ModulePtr module;
    InstancePrePtr pre;
    std::string hash;
    const void* owner = nullptr;  // the Sandbox::Impl (engine) it was compiled for
    bool needs_wasi = false;
    bool has_initialize = false;
};

struct Sandbox::Impl {
    EngineConfig cfg;
    std::shared_ptr<Backend> backend;
    wasm_engine_t* engine = nullptr;
    wasmtime_linker_t* linker = nullptr;
    std::string engine_key;
    Digest engine_key_hash{};
    std::jthread ticker;

    mutable std::mutex mu;
    std::unordered_map<std::string, std::shared_ptr<const GuestModule>> modules;

    ~Impl() {
        if (ticker.joinable()) {
            ticker.request_stop();
            ticker.join();
        }
        modules.clear();
        if (linker) wasmtime_linker_delete(linker);
        if (engine) wasm_engine_delete(engine);
    }

    Result<std::shared_ptr<const GuestModule>> load(std::span<const uint8_t> input, LoadInfo* info);
    Result<std::shared_ptr<const GuestModule>> finish(ModulePtr module, const std::string& hash);
    std::optional<ModulePtr> read_disk(const std::filesystem::path& path, const Digest& module_hash);
    void write_disk(const std::filesystem::path& path, const Digest& module_hash, const wasmtime_module_t* module);
    Outcome run(const GuestModule& m, const Request& req);
};

Sandbox::Sandbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Sandbox::~Sandbox() = default;
const EngineConfig& Sandbox::config() const { return impl_->cfg; }

Result<std::unique_ptr<Sandbox>> Sandbox::create(EngineConfig cfg, std::shared_ptr<Backend> backend) {
    if (cfg.max_instances == 0 || cfg.max_memory_bytes < (64u << 10) || cfg.max_wasm_stack < (16u << 10) ||
        cfg.epoch_tick.count() <= 0)
        return make_error("sandbox: invalid engine configuration");
    auto impl = std::make_unique<Impl>();
    impl->cfg = cfg;
    impl->backend = std::move(backend);

    wasm_config_t* c = wasm_config_new();
    wasmtime_config_epoch_interruption_set(c, true);
    wasmtime_config_consume_fuel_set(c, cfg.fuel);
    wasmtime_config_max_wasm_stack_set(c, cfg.max_wasm_stack);
    wasmtime_config_cranelift_opt_level_set(c, WASMTIME_OPT_LEVEL_SPEED);
    if (cfg.pooling) {
        wasmtime_pooling_allocation_config_t* p = wasmtime_pooling_allocation_config_new();
        wasmtime_pooling_allocation_config_total_core_instances_set(p, cfg.max_instances);
        wasmtime_pooling_allocation_config_total_memories_set(p, cfg.max_instances);
        wasmtime_pooling_allocation_config_total_tables_set(p, cfg.max_instances);
        wasmtime_pooling_allocation_config_max_memories_per_module_set(p, 1);
        wasmtime_pooling_allocation_config_max_tables_per_module_set(p, 1);
        wasmtime_pooling_allocation_config_max_memory_size_set(p, cfg.max_memory_bytes);
        wasmtime_pooling_allocation_config_table_elements_set(p, cfg.max_table_elements);
        wasmtime_pooling_allocation_config_max_core_instance_size_set(p, cfg.max_core_instance_size);
        wasmtime_pooling_allocation_strategy_set(c, p);
        wasmtime_pooling_allocation_config_delete(p);
    }
    // Not wasm_engine_new_with_config: that one aborts the process when wasmtime rejects the configuration
    // (e.g. the pool cannot reserve its address space under a low `ulimit -v`).
    if (ErrorPtr e{realm_engine_new(c, &impl->engine)})  // takes ownership of c
        return make_error("sandbox: cannot create the wasmtime engine: " + condense(error_message(e.get())));

    // Everything that changes the compiled artifact (or whether wasmtime accepts it) goes into the key.
    impl->engine_key = "wasmtime-48.0.8;x86_64-linux;abi=1;epoch=1;opt=speed;fuel=" + std::to_string(cfg.fuel) +
                       ";pooling=" + std::to_string(cfg.pooling) + ";max_memory=" + std::to_string(cfg.max_memory_bytes) +
                       ";stack=" + std::to_string(cfg.max_wasm_stack);
    impl->engine_key_hash = sha256(impl->engine_key);

    impl->linker = wasmtime_linker_new(impl->engine);
    if (ErrorPtr e{wasmtime_linker_define_wasi(impl->linker)})
        return make_error("sandbox: defining WASI failed: " + error_message(e.get()));
    for (const HostFunction& f : abi_v1_imports()) {
        wasm_functype_t* ft = make_functype(f.params, f.results);
        ErrorPtr e{wasmtime_linker_define_func_unchecked(impl->linker, "realm", 5, f.name, std::strlen(f.name), ft,
                                                         f.callback, nullptr, nullptr)};
        wasm_functype_delete(ft);
        if (e) return make_error(std::string("sandbox: defining realm::") + f.name + " failed: " + error_message(e.get()));
    }

    if (!cfg.cache_dir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(cfg.cache_dir, ec);
        if (ec) return make_error("sandbox: cannot create module cache dir " + cfg.cache_dir.string() + ": " + ec.message());
        ::chmod(cfg.cache_dir.c_str(), 0700);
    }

    wasm_engine_t* engine = impl->engine;
    const auto tick = cfg.epoch_tick;
    impl->ticker = std::jthread([engine, tick](std::stop_token stop) {
        while (!stop.stop_requested()) {
            std::this_thread::sleep_for(tick);
            wasmtime_engine_increment_epoch(engine);
        }
    });
    return std::make_unique<Sandbox>(std::move(impl));
}

// ---- loading ----------------------------------------------------------------------------------------------

Result<std::shared_ptr<const GuestModule>> Sandbox::load_file(const std::filesystem::path& path, LoadInfo* info) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return make_error("load: cannot open " + path.string());
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto r = load(bytes, info);
    if (!r) return make_error(path.filename().string() + ": " + r.error().message);
    return r;
}

Result<std::shared_ptr<const GuestModule>> Sandbox::load(std::span<const uint8_t> input, LoadInfo* info) {
    try {
        return impl_->load(input, info);
    } catch (const std::exception& e) {
        return make_error(std::string("load: host error: ") + e.what());
    }
}

Result<std::shared_ptr<const GuestModule>> Sandbox::Impl::load(std::span<const uint8_t> input, LoadInfo* info) {
    Impl& I = *this;
    wasm_byte_vec_t wat_out{0, nullptr};
    std::span<const uint8_t> bytes = input;
    static constexpr uint8_t kWasmMagic[4] = {0, 'a', 's', 'm'};
    if (input.size() < 4 || std::memcmp(input.data(), kWasmMagic, 4) != 0) {
        if (ErrorPtr e{wasmtime_wat2wasm(reinterpret_cast<const char*>(input.data()), input.size(), &wat_out)})
            return make_error("load: neither a wasm binary nor valid WAT: " + error_message(e.get()));
        bytes = std::span(reinterpret_cast<const uint8_t*>(wat_out.data), wat_out.size);
    }
    struct VecGuard {
        wasm_byte_vec_t* v;
        ~VecGuard() { if (v->data) wasm_byte_vec_delete(v); }
    } guard{&wat_out};

    const Digest module_hash = sha256(bytes);
    const std::string key = hex(module_hash);
    if (info) info->hash = key;
    {
        std::lock_guard lock(I.mu);
        if (auto it = I.modules.find(key); it != I.modules.end()) {
            if (info) info->source = LoadInfo::Source::memory;
            return it->second;
        }
    }

    std::filesystem::path disk;
    if (!I.cfg.cache_dir.empty()) disk = I.cfg.cache_dir / (key + "-" + hex(std::span(I.engine_key_hash).first(8)) + ".cwasm");
    ModulePtr module;
    LoadInfo::Source source = LoadInfo::Source::compiled;
    if (!disk.empty()) {
        if (auto m = I.read_disk(disk, module_hash)) {
            module = std::move(*m);
            source = LoadInfo::Source::disk;
        }
    }
    if (!module) {
        wasmtime_module_t* raw = nullptr;
        if (ErrorPtr e{wasmtime_module_new(I.engine, bytes.data(), bytes.size(), &raw)})
            return make_error("load: invalid module: " + error_message(e.get()));
        module.reset(raw);
    }
    if (info) info->source = source;
    auto result = I.finish(std::move(module), key);
    if (!result) return result;
    // Only modules that pass the ABI checks are written to disk.
    if (!disk.empty() && source == LoadInfo::Source::compiled) I.write_disk(disk, module_hash, (*result)->module.get());
    std::lock_guard lock(I.mu);
    auto [it, inserted] = I.modules.emplace(key, *result);
    return it->second;
}

Result<std::shared_ptr<const GuestModule>> Sandbox::Impl::finish(ModulePtr module, const std::string& hash) {
    auto gm = std::make_shared<GuestModule>();
    gm->hash = hash;
    gm->owner = this;

    // Imports: only module "realm" (ABI v1, exact types) and WASI preview 1.
    wasm_importtype_vec_t imports;
    wasmtime_module_imports(module.get(), &imports);
    std::string problem;
    for (size_t i = 0; i < imports.size && problem.empty(); ++i) {
        const wasm_name_t* mod = wasm_importtype_module(imports.data[i]);
        const wasm_name_t* nm = wasm_importtype_name(imports.data[i]);
        const std::string m(mod->data, mod->size), n(nm->data, nm->size);
        const wasm_externtype_t* et = wasm_importtype_type(imports.data[i]);
        if (m == "wasi_snapshot_preview1") {
            gm->needs_wasi = true;  // names and types are checked by the linker below
            continue;
        }
        if (m != "realm") {
            problem = "unknown import `" + m + "::" + n + "` (only module `realm` and `wasi_snapshot_preview1` exist)";
            break;
        }
        const HostFunction* hf = nullptr;
        for (const HostFunction& f : abi_v1_imports())
            if (n == f.name) hf = &f;
        if (!hf) {
            problem = "unknown import `realm::" + n + "` (not in guest ABI v1)";
            break;
        }
        const wasm_functype_t* ft = wasm_externtype_as_functype_const(et);
        if (!ft) {
            problem = "import `realm::" + n + "` must be a function";
        } else if (!same_sig(ft, hf->params, hf->results)) {
            problem = "import `realm::" + n + "` has type " + sig(ft) + ", ABI v1 says " + sig(hf->params, hf->results);
        }
    }
    wasm_importtype_vec_delete(&imports);
    if (!problem.empty()) return make_error("load: " + problem);

    // Exports: memory + the ABI v1 functions, exact types; `_initialize` (reactor) optional.
    wasm_exporttype_vec_t exports;
    wasmtime_module_exports(module.get(), &exports);
    auto find = [&](std::string_view name) -> const wasm_externtype_t* {
        for (size_t i = 0; i < exports.size; ++i) {
            const wasm_name_t* nm = wasm_exporttype_name(exports.data[i]);
            if (std::string_view(nm->data, nm->size) == name) return wasm_exporttype_type(exports.data[i]);
        }
        return nullptr;
    };
    const wasm_externtype_t* memt = find("memory");
    if (!memt) problem = "missing export `memory`";
    else if (!wasm_externtype_as_memorytype_const(memt)) problem = "export `memory` must be a memory";
    for (const RequiredExport& ex : abi_v1_exports()) {
        if (!problem.empty()) break;
        const wasm_externtype_t* t = find(ex.name);
        const wasm_functype_t* ft = t ? wasm_externtype_as_functype_const(t) : nullptr;
        if (!t) problem = std::string("missing export `") + ex.name + "`";
        else if (!ft) problem = std::string("export `") + ex.name + "` must be a function";
        else if (!same_sig(ft, ex.params, ex.results))
            problem = std::string("export `") + ex.name + "` has type " + sig(ft) + ", ABI v1 says " + sig(ex.params, ex.results);
    }
    if (problem.empty()) {
        if (const wasm_externtype_t* t = find("_initialize")) {
            const wasm_functype_t* ft = wasm_externtype_as_functype_const(t);
            if (!ft || !same_sig(ft, {}, {})) problem = "export `_initialize` must have type () -> ()";
            gm->has_initialize = true;
        }
    }
    wasm_exporttype_vec_delete(&exports);
    if (!problem.empty()) return make_error("load: " + problem);

    wasmtime_instance_pre_t* pre = nullptr;
    if (ErrorPtr e{wasmtime_linker_instantiate_pre(linker, module.get(), &pre)})
        return make_error("load: " + error_message(e.get()));
    gm->pre.reset(pre);
    gm->module = std::move(module);
    return std::shared_ptr<const GuestModule>(std::move(gm));
}

std::optional<ModulePtr> Sandbox::Impl::read_disk(const std::filesystem::path& path, const Digest& module_hash) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return std::nullopt;
    std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto reject = [&](const char* why) -> std::optional<ModulePtr> {
        spdlog::warn("sandbox: ignoring cached module {}: {}", path.string(), why);
        return std::nullopt;
    };
    if (data.size() < kHeader || std::memcmp(data.data(), kMagic, 8) != 0) return reject("bad header");
    if (std::memcmp(data.data() + 8, module_hash.data(), 32) != 0) return reject("module hash mismatch");
    if (std::memcmp(data.data() + 40, engine_key_hash.data(), 32) != 0) return reject("engine configuration mismatch");
    uint64_t n = 0;
    std::memcpy(&n, data.data() + 104, 8);
    if (n != data.size() - kHeader) return reject("truncated");
    const std::span<const uint8_t> payload(data.data() + kHeader, n);
    const Digest ph = sha256(payload);
    if (std::memcmp(data.data() + 72, ph.data(), 32) != 0) return reject("payload hash mismatch");
    wasmtime_module_t* raw = nullptr;
    if (ErrorPtr e{wasmtime_module_deserialize(engine, payload.data(), payload.size(), &raw)}) {
        spdlog::warn("sandbox: ignoring cached module {}: {}", path.string(), error_message(e.get()));
        return std::nullopt;
    }
    return ModulePtr(raw);
}

void Sandbox::Impl::write_disk(const std::filesystem::path& path, const Digest& module_hash, const wasmtime_module_t* module) {
    wasm_byte_vec_t ser{0, nullptr};
    if (ErrorPtr e{wasmtime_module_serialize(const_cast<wasmtime_module_t*>(module), &ser)}) {
        spdlog::warn("sandbox: cannot serialize module: {}", error_message(e.get()));
        return;
    }
    const std::span<const uint8_t> payload(reinterpret_cast<const uint8_t*>(ser.data), ser.size);
    const Digest ph = sha256(payload);
    const uint64_t n = payload.size();
    std::vector<uint8_t> out(kHeader);
    std::memcpy(out.data(), kMagic, 8);
    std::memcpy(out.data() + 8, module_hash.data(), 32);
    std::memcpy(out.data() + 40, engine_key_hash.data(), 32);
    std::memcpy(out.data() + 72, ph.data(), 32);
    std::memcpy(out.data() + 104, &n, 8);
    out.insert(out.end(), payload.begin(), payload.end());
    wasm_byte_vec_delete(&ser);

    // Write-then-rename so concurrent readers never see a partial file.
    const auto tmp = path.string() + ".tmp." + std::to_string(::getpid()) + "." +
                     std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
        if (!f) {
            spdlog::warn("sandbox: cannot write {}", tmp);
            std::error_code ec;
            std::filesystem::remove(tmp, ec);
            return;
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        spdlog::warn("sandbox: cannot publish {}: {}", path.string(), ec.message());
        std::filesystem::remove(tmp, ec);
    }
}

size_t Sandbox::cached_modules() const {
    std::lock_guard lock(impl_->mu);
    return impl_->modules.size();
}

void Sandbox::clear_memory_cache() {
    std::lock_guard lock(impl_->mu);
    impl_->modules.clear();
}

// ---- running a request ------------------------------------------------------------------------------------

namespace {

struct Failure {
    ErrorKind kind;
    std::string message;
};

// Turns a wasmtime error/trap into the request's error, preferring a reason recorded by a host function.
Failure classify(const RequestContext& r, const wasmtime_error_t* err, const wasm_trap_t* trap, std::string_view during,
                 const Request& req) {
    if (r.fatal != ErrorKind::none) return {r.fatal, r.fatal_message};
    std::string msg = err ? error_message(err) : trap ? trap_message(trap) : std::string("unknown failure");
    const std::string where = " (during " + std::string(during) + ")";
    if (err) {
        int status = 0;
        if (wasmtime_error_exit_status(err, &status))
            return {ErrorKind::guest_error, "guest called proc_exit(" + std::to_string(status) + ")" + where};
    }
    wasmtime_trap_code_t code = 0;
    if (trap && wasmtime_trap_code(trap, &code)) {
        switch (code) {
            case WASMTIME_TRAP_CODE_INTERRUPT:
                return {ErrorKind::deadline, "time budget of " + std::to_string(req.limits.time_budget.count()) +
                                                 " ms exceeded" + where};
            case WASMTIME_TRAP_CODE_OUT_OF_FUEL: return {ErrorKind::fuel, "fuel budget exhausted" + where};
            case WASMTIME_TRAP_CODE_STACK_OVERFLOW: return {ErrorKind::stack_overflow, "wasm stack overflow" + where};
            default: break;
        }
    }
    if (msg.find("growing memory") != std::string::npos || msg.find("growing table") != std::string::npos ||
        msg.find("memory minimum size") != std::string::npos || msg.find("exceeds memory limits") != std::string::npos)
        return {ErrorKind::memory_limit, "memory limit of " + std::to_string(req.limits.memory_bytes) +
                                             " bytes exceeded" + where + ": " + condense(msg)};
    if (err && during == "instantiation") return {ErrorKind::instantiate, "cannot instantiate the module: " + condense(msg)};
    return {ErrorKind::trap, "guest trapped" + where + ": " + condense(msg)};
}

}  // namespace

Outcome Sandbox::run(const GuestModule& module, const Request& request) {
    try {
        return impl_->run(module, request);
    } catch (const std::exception& e) {
        return Outcome{ErrorKind::host, std::string("host error: ") + e.what(), {}, {}};
    }
}

Outcome Sandbox::Impl::run(const GuestModule& m, const Request& req) {
    Outcome out;
    if (m.owner != this) {
        // Mixing engines would make wasmtime panic (= abort); refuse instead.
        out.error = ErrorKind::host;
        out.message = "module was loaded by a different Sandbox";
        return out;
    }
    if (req.body_json.size() > req.limits.max_request_bytes || req.body_json.size() > 0x7fffffffu) {
        out.error = ErrorKind::invalid_request;
        out.message = "request body larger than " + std::to_string(req.limits.max_request_bytes) + " bytes";
        return out;
    }
    const auto t0 = Clock::now();
    RequestContext r;  // outlives the store (declared first, destroyed last)
    r.request = &req;
    r.backend = backend.get();
    r.deadline = t0 + req.limits.time_budget;
    {
        thread_local std::mt19937 rng{std::random_device{}()};
        r.handle_tag = static_cast<uint16_t>(1 + rng() % 0x7fff);
    }

    StorePtr store{wasmtime_store_new(engine, &r, nullptr)};
    wasmtime_context_t* cx = wasmtime_store_context(store.get());
    const uint64_t mem_cap = std::min(req.limits.memory_bytes, cfg.max_memory_bytes);
    const uint64_t tbl_cap = std::min<uint64_t>(req.limits.table_elements, cfg.max_table_elements);
    realm_store_limiter_trapping(store.get(), static_cast<int64_t>(mem_cap), static_cast<int64_t>(tbl_cap), 1, 1, 1);
    const auto tick = cfg.epoch_tick.count();
    wasmtime_context_set_epoch_deadline(cx, static_cast<uint64_t>((req.limits.time_budget.count() + tick - 1) / tick) + 1);
    if (cfg.fuel) {
        if (ErrorPtr e{wasmtime_context_set_fuel(cx, req.limits.fuel.value_or(UINT64_MAX))})
            return Outcome{ErrorKind::host, "set_fuel: " + error_message(e.get()), {}, {}};
    }
    if (m.needs_wasi) {
        // No args, env, preopened dirs or inherited stdio: WASI is there so wasi-libc links, not for access.
        wasi_config_t* wc = wasi_config_new();
        if (ErrorPtr e{wasmtime_context_set_wasi(cx, wc)})
            return Outcome{ErrorKind::host, "wasi: " + error_message(e.get()), {}, {}};
    }

    auto fail = [&](Failure f) {
        out.error = f.kind;
        out.message = std::move(f.message);
        out.stats = r.stats;
        return out;
    };

    wasmtime_instance_t instance;
    {
        wasm_trap_t* trap_raw = nullptr;
        ErrorPtr err{wasmtime_instance_pre_instantiate(m.pre.get(), cx, &instance, &trap_raw)};
        TrapPtr trap{trap_raw};
        if (err || trap) {
            return fail(classify(r, err.get(), trap.get(), "instantiation", req));
        }
    }
    wasmtime_extern_t ext;
    if (!wasmtime_instance_export_get(cx, &instance, "memory", 6, &ext) || ext.kind != WASMTIME_EXTERN_MEMORY)
        return fail({ErrorKind::load, "export `memory` not found after instantiation"});
    r.memory = ext.of.memory;
    const auto t1 = Clock::now();
    r.stats.instantiate_us = std::chrono::duration<double, std::micro>(t1 - t0).count();

    auto func = [&](const char* name) -> std::optional<wasmtime_func_t> {
        wasmtime_extern_t e;
        if (!wasmtime_instance_export_get(cx, &instance, name, std::strlen(name), &e) || e.kind != WASMTIME_EXTERN_FUNC)
            return std::nullopt;
        return e.of.func;
    };
    // Calls an export; returns the failure, if any.
    auto call = [&](const char* name, std::span<const wasmtime_val_t> args, wasmtime_val_t* result) -> std::optional<Failure> {
        auto f = func(name);
        if (!f) return Failure{ErrorKind::load, std::string("export `") + name + "` not found"};
        wasm_trap_t* trap_raw = nullptr;
        ErrorPtr err{wasmtime_func_call(cx, &*f, args.data(), args.size(), result, result ? 1 : 0, &trap_raw)};
        TrapPtr trap{trap_raw};
        if (err || trap) return classify(r, err.get(), trap.get(), name, req);
        if (r.fatal != ErrorKind::none) return Failure{r.fatal, r.fatal_message};
        return std::nullopt;
    };
    auto with_last_error = [&](std::string s) {
        if (!r.last_error.empty()) s += "; last host error: " + r.last_error;
        return s;
    };

    wasmtime_val_t res;
    if (m.has_initialize) {
        if (auto f = call("_initialize", {}, nullptr)) return fail(std::move(*f));
    }
    if (auto f = call("realm_abi_version", {}, &res)) return fail(std::move(*f));
    if (res.of.i32 != REALM_ABI_VERSION)
        return fail({ErrorKind::abi_version, "guest implements ABI version " + std::to_string(res.of.i32) +
                                                 ", this host implements " + std::to_string(REALM_ABI_VERSION)});
    if (auto f = call("realm_init", {}, &res)) return fail(std::move(*f));
    if (res.of.i32 != 0)
        return fail({ErrorKind::guest_error, with_last_error("realm_init returned " + std::to_string(res.of.i32))});

    // Place the request in guest memory with the guest's own allocator.
    const auto len = static_cast<int32_t>(req.body_json.size());
    wasmtime_val_t arg;
    arg.kind = WASMTIME_I32;
    arg.of.i32 = len;
    if (auto f = call("realm_alloc", std::span(&arg, 1), &res)) return fail(std::move(*f));
    const auto ptr = static_cast<uint32_t>(res.of.i32);
    {
        const size_t size = wasmtime_memory_data_size(cx, &*r.memory);
        if (ptr == 0 || uint64_t{ptr} + static_cast<uint64_t>(len) > size)
            return fail({ErrorKind::guest_error, "realm_alloc(" + std::to_string(len) + ") returned an invalid pointer " +
                                                     std::to_string(ptr)});
        if (len > 0) std::memcpy(wasmtime_memory_data(cx, &*r.memory) + ptr, req.body_json.data(), static_cast<size_t>(len));
    }
    wasmtime_val_t args[2];
    args[0].kind = WASMTIME_I32;
    args[0].of.i32 = static_cast<int32_t>(ptr);
    args[1].kind = WASMTIME_I32;
    args[1].of.i32 = len;
    if (auto f = call("realm_handle_request", args, &res)) return fail(std::move(*f));
    const int32_t rc = res.of.i32;
    if (auto f = call("realm_free", std::span(args, 1), nullptr)) return fail(std::move(*f));
    const bool cancelled = req.cancelled && req.cancelled->load();
    if (cancelled && (rc != 0 || !r.response))
        return fail({ErrorKind::cancelled, "request cancelled by the client (realm_handle_request returned " +
                                               std::to_string(rc) + ")"});
    if (rc != 0)
        return fail({ErrorKind::guest_error, with_last_error("realm_handle_request returned " + std::to_string(rc))});
    if (!r.response)
        return fail({ErrorKind::no_response, "realm_handle_request returned 0 without calling response_write"});

    out.response = std::move(*r.response);
    r.stats.run_us = std::chrono::duration<double, std::micro>(Clock::now() - t1).count();
    if (cfg.fuel) {
        uint64_t left = 0;
        if (ErrorPtr e{wasmtime_context_get_fuel(cx, &left)}; !e)
            r.stats.fuel_consumed = req.limits.fuel.value_or(UINT64_MAX) - left;
    }
    out.stats = r.stats;
    return out;
}

}  // namespace realm::sandbox
