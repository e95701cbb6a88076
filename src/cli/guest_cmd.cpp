// `realm guest run`: runs one request through a WebAssembly guest against a real model, streaming the
// guest's emitted chunks to stdout and then printing its response JSON on a line of its own.
#include "cli/guest_cmd.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sandbox/engine_backend.hpp"
#include "sandbox/sandbox.hpp"

namespace realm::cli {
namespace {

int fail(const std::string& msg) {
    std::fprintf(stderr, "realm guest run: %s\n", msg.c_str());
    return 1;
}

const char* level_name(sandbox::LogLevel l) {
    switch (l) {
        case sandbox::LogLevel::debug: return "debug";
        case sandbox::LogLevel::info: return "info";
        case sandbox::LogLevel::warn: return "warn";
        case sandbox::LogLevel::error: return "error";
    }
    return "?";
}

}  // namespace

int guest_run(const GuestRunOptions& o) {
    std::string body = o.request;
    if (!body.empty() && body[0] == '@') {
        std::ifstream in(body.substr(1), std::ios::binary);
        if (!in) return fail("cannot read request file '" + body.substr(1) + "'");
        std::stringstream ss;
        ss << in.rdbuf();
        body = ss.str();
    }
    // The model is registered under --name, else the request's "model" name, else the file's stem (which is
    // then put in the request), so a guest can open it by the name it was given. A body that is not a JSON
    // object goes to the guest unchanged: answering bad requests is the guest's job.
    auto req = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    const bool is_object = !req.is_discarded() && req.is_object();
    std::string name = o.name;
    if (name.empty() && is_object && req.contains("model") && req["model"].is_string())
        name = req["model"].get<std::string>();
    if (name.empty()) name = std::filesystem::path(o.model).stem().string();
    if (is_object) {
        req["model"] = name;
        body = req.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }

    auto backend = std::make_shared<sandbox::EngineBackend>();
    if (auto s = backend->add_model(name, o.model, sandbox::EngineModelOptions{o.n_threads, o.n_ctx, o.chat_template, o.weights}); !s)
        return fail(s.error().message);
    backend->allow("cli", {name});

    sandbox::EngineConfig cfg;
    cfg.pooling = false;
    cfg.max_instances = 1;
    auto sb = sandbox::Sandbox::create(cfg, backend);
    if (!sb) return fail(sb.error().message);
    auto mod = (*sb)->load_file(o.guest);
    if (!mod) return fail(mod.error().message);

    sandbox::Request r;
    r.tenant = "cli";
    r.request_id = "cli-1";
    r.body_json = body;
    r.allowed_models = backend->allowed_models("cli");
    r.limits.time_budget = std::chrono::milliseconds(o.timeout_ms);
    r.limits.memory_bytes = 256ull << 20;
    bool emitted = false;
    r.on_chunk = [&](std::string_view chunk) {
        emitted = true;
        std::fwrite(chunk.data(), 1, chunk.size(), stdout);
        std::fflush(stdout);
    };
    r.on_log = [](sandbox::LogLevel l, std::string_view line) {
        std::fprintf(stderr, "[guest %s] %.*s\n", level_name(l), static_cast<int>(line.size()), line.data());
    };
    const auto t0 = std::chrono::steady_clock::now();
    const sandbox::Outcome out = (*sb)->run(**mod, r);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (emitted) std::fputc('\n', stdout);
    if (!out.ok()) return fail(std::string(sandbox::to_string(out.error)) + ": " + out.message);
    std::printf("%s\n", out.response.c_str());
    std::fflush(stdout);
    auto resp = nlohmann::json::parse(out.response, nullptr, false);
    if (resp.is_object() && resp.contains("error")) return fail("the guest answered with an error");
    // Same end-to-end measure as `realm run` prints (prompt + generation), for bench/guest_overhead.
    const auto tokens = resp.is_object() ? resp.value("/usage/completion_tokens"_json_pointer, 0) : 0;
    std::fprintf(stderr, "request: %d completion tokens in %.3f s (%.2f tok/s end to end)\n", tokens, seconds,
                 seconds > 0 ? tokens / seconds : 0.0);
    return 0;
}

}  // namespace realm::cli
