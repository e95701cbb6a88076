#include "cli/serve.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <system_error>

#include "sandbox/engine_backend.hpp"
#include "server/http.hpp"
#include "server/service.hpp"
#include "server/store.hpp"

namespace realm::cli {
namespace {

namespace fs = std::filesystem;

int fail(const std::string& msg) {
    std::fprintf(stderr, "realm serve: %s\n", msg.c_str());
    return 1;
}

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
}

fs::path data_dir(const ServeOptions& o) {
    if (!o.data_dir.empty()) return o.data_dir;
    if (auto d = env("REALM_DATA_DIR"); !d.empty()) return d;
    return fs::path(env("HOME")) / ".local" / "share" / "realm";
}

// NAME=PATH pairs; without --model, the SmolLM2 file of $REALM_SMOLLM2 or the model cache.
Result<std::vector<std::pair<std::string, std::string>>> model_list(const ServeOptions& o) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& m : o.models) {
        const auto eq = m.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == m.size())
            return make_error("--model wants NAME=PATH, got '" + m + "'");
        out.emplace_back(m.substr(0, eq), m.substr(eq + 1));
    }
    if (!out.empty()) return out;
    std::vector<fs::path> candidates;
    if (auto p = env("REALM_SMOLLM2"); !p.empty()) candidates.emplace_back(p);
    const auto cache = env("REALM_CACHE").empty() ? fs::path(env("HOME")) / ".cache" / "realm" : fs::path(env("REALM_CACHE"));
    candidates.push_back(cache / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf");
    for (const auto& c : candidates) {
        std::error_code ec;
        if (fs::is_regular_file(c, ec)) return std::vector<std::pair<std::string, std::string>>{{"smollm2", c.string()}};
    }
    return make_error("no model: pass --model NAME=PATH (SmolLM2 was not found in $REALM_SMOLLM2 or " +
                      (cache / "models").string() + ")");
}

}  // namespace

int serve(const ServeOptions& o) {
    spdlog::set_default_logger(spdlog::stderr_color_mt("realm"));
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

    const fs::path dir = data_dir(o);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return fail("cannot create the data directory " + dir.string() + ": " + ec.message());
    auto store = server::Store::open(dir / "realm.db");
    if (!store) return fail(store.error().message);

    auto tenants = (*store)->list_tenants();
    if (!tenants) return fail(tenants.error().message);
    if (tenants->empty()) {
        server::Tenant t;
        t.name = "default";
        t.models = {"*"};
        if (auto r = (*store)->add_tenant(t); !r) return fail(r.error().message);
        auto key = (*store)->create_key("default", "created by realm serve");
        if (!key) return fail(key.error().message);
        std::printf("realm: created tenant 'default' (all models); its API key, shown only this once:\n  %s\n",
                    key->secret.c_str());
        std::fflush(stdout);
    }
    const std::string admin_key = o.admin_key.empty() ? env("REALM_ADMIN_KEY") : o.admin_key;
    if (!admin_key.empty()) {
        if (auto r = (*store)->set_admin_key(admin_key); !r) return fail(r.error().message);
    }

    auto models = model_list(o);
    if (!models) return fail(models.error().message);
    auto backend = std::make_shared<sandbox::EngineBackend>();
    for (const auto& [name, path] : *models) {
        auto lm = engine::LoadedModel::open(path, engine::LoadOptions{o.n_threads, {}, o.weights});
        if (!lm) return fail("model '" + name + "': " + lm.error().message);
        const size_t copied = (*lm)->model().copied_bytes();
        if (auto s = backend->add_model(name, std::shared_ptr<const engine::LoadedModel>(std::move(*lm)), o.n_ctx); !s)
            return fail("model '" + name + "': " + s.error().message);
        spdlog::info("model {} = {} ({:.1f} MiB of weights copied at load, --weights {})", name, path,
                     static_cast<double>(copied) / (1 << 20), weights_name(o.weights));
    }

    server::ServiceOptions so;
    so.workers = o.max_concurrent;
    so.queue_capacity = o.max_queue;
    auto service = server::Service::create(backend, **store, default_guest_wasm(), so);
    if (!service) return fail(service.error().message);

    server::HttpOptions ho;
    ho.host = o.host;
    ho.port = o.port;
    ho.max_body_bytes = o.max_body_bytes;
    ho.shutdown_grace = std::chrono::seconds(o.shutdown_grace_s);
    auto http = server::HttpServer::create(**service, ho);
    if (!http) return fail(http.error().message);
    std::printf("realm: listening on http://%s:%u (data: %s)\n", o.host.c_str(), static_cast<unsigned>((*http)->port()),
                dir.string().c_str());
    std::fflush(stdout);
    (*http)->run();
    return 0;
}

}  // namespace realm::cli
