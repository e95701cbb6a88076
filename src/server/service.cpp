#include "server/service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <random>

namespace realm::server {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

ApiError bad_request(std::string message, std::string param = {}, std::string code = {}) {
    return ApiError::make(400, "invalid_request_error", std::move(message), std::move(code), std::move(param),
                          "invalid_request");
}

// JSON text for the guest and for clients: invalid UTF-8 cannot reach here (the parser refuses it), but
// dump() must never throw, so replace anyway.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A positive integer field, absent or null allowed. Returns an error message, or empty.
std::string read_count(const json& j, const char* key, uint64_t min, uint64_t max, std::optional<uint64_t>& out) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return {};
    if (!it->is_number_integer() || (it->is_number_unsigned() ? false : it->get<int64_t>() < 0)) {
        return std::string("\"") + key + "\" must be an integer >= " + std::to_string(min);
    }
    const uint64_t v = it->get<uint64_t>();
    if (v < min || v > max) {
        return std::string("\"") + key + "\" must be between " + std::to_string(min) + " and " + std::to_string(max);
    }
    out = v;
    return {};
}

// Fields of a guest's response, which may be any JSON: the wrong type reads as absent, never throws.
std::string string_field(const json& obj, const char* key) {
    if (!obj.is_object()) return {};
    auto it = obj.find(key);
    return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}
uint64_t count_field(const json& obj, const char* key) {
    if (!obj.is_object()) return 0;
    auto it = obj.find(key);
    return it != obj.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

ApiError outcome_error(const sandbox::Outcome& out, bool shutting_down) {
    using K = sandbox::ErrorKind;
    const std::string kind(sandbox::to_string(out.error));
    switch (out.error) {
        case K::invalid_request:
            return ApiError::make(413, "invalid_request_error", "request refused by the sandbox: " + out.message,
                                  "request_too_large", {}, kind);
        case K::instantiate:
            return ApiError::make(503, "server_error", "no guest instance available: " + out.message, "overloaded", {},
                                  kind);
        case K::cancelled:
            return shutting_down ? ApiError::make(503, "server_error", "the server is shutting down", "shutting_down", {},
                                                  kind)
                                 : ApiError::make(499, "invalid_request_error", "the request was cancelled", "cancelled",
                                                  {}, kind);
        default:
            return ApiError::make(500, "server_error", "the tenant's guest failed (" + kind + "): " + out.message,
                                  "guest_" + kind, {}, kind);
    }
}

}  // namespace

ApiError ApiError::make(int status, std::string type, std::string message, std::string code, std::string param,
                        std::string kind) {
    ApiError e;
    e.status = status;
    e.type = std::move(type);
    e.message = std::move(message);
    e.code = std::move(code);
    e.param = std::move(param);
    e.kind = kind.empty() ? e.code : std::move(kind);
    if (e.kind.empty()) e.kind = e.type;
    return e;
}

nlohmann::json ApiError::body() const {
    json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
    if (!param.empty()) e["param"] = param;
    if (!code.empty()) e["code"] = code;
    return json{{"error", std::move(e)}};
}

std::string_view endpoint_path(Endpoint e) {
    return e == Endpoint::chat ? "/v1/chat/completions" : "/v1/completions";
}

struct Service::Queued {
    Job job;
    GenerateHandlers handlers;
    std::shared_ptr<std::atomic<bool>> cancelled;
};

Service::Service(std::shared_ptr<sandbox::EngineBackend> engine, Store& store, const ServiceOptions& opts)
    : opts_(opts), store_(store), engine_(std::move(engine)) {
    for (auto& m : engine_->model_names()) models_.insert(std::move(m));
}

Result<std::unique_ptr<Service>> Service::create(std::shared_ptr<sandbox::EngineBackend> engine, Store& store,
                                                 std::span<const uint8_t> default_guest, const ServiceOptions& opts) {
    if (opts.workers == 0) return make_error("service: at least one worker is needed");
    if (!engine) return make_error("service: no engine");
    std::unique_ptr<Service> s(new Service(std::move(engine), store, opts));
    sandbox::EngineConfig cfg;
    // Every worker runs at most one instance; a few spare slots cover instances still being torn down.
    cfg.max_instances = opts.workers + 4;
    auto sb = sandbox::Sandbox::create(cfg, s->engine_);
    if (!sb) return make_error("service: " + sb.error().message);
    s->sandbox_ = std::move(*sb);
    auto mod = s->sandbox_->load(default_guest);
    if (!mod) return make_error("service: the default guest: " + mod.error().message);
    s->default_guest_ = std::move(*mod);
    std::random_device rd;
    s->next_id_ = (static_cast<uint64_t>(rd()) << 32 | rd()) & 0xffffffffffULL;
    for (uint32_t i = 0; i < opts.workers; ++i) s->workers_.emplace_back([p = s.get()] { p->worker_loop(); });
    return s;
}

Service::~Service() {
    {
        std::lock_guard lk(mu_);
        stopping_ = true;
        accepting_ = false;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
}

std::string Service::new_request_id() {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(next_id_.fetch_add(1)));
    return buf;
}

AuthOutcome Service::authenticate(std::string_view authorization) {
    AuthOutcome r;
    std::string_view key = authorization;
    while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
    if (key.size() >= 7) {
        std::string scheme(key.substr(0, 7));
        std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
        if (scheme == "bearer ") key.remove_prefix(7);
    }
    while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
    while (!key.empty() && key.back() == ' ') key.remove_suffix(1);
    if (key.empty()) {
        r.error = ApiError::make(401, "authentication_error",
                                 "missing API key: send it as 'Authorization: Bearer <key>'", "missing_api_key", {},
                                 "auth_missing");
        return r;
    }
    auto a = store_.authenticate(key);
    if (!a) {
        r.error = ApiError::make(500, "server_error", "authentication failed: " + a.error().message, "internal_error");
        return r;
    }
    if (a->status != AuthStatus::ok) {
        const bool revoked = a->status == AuthStatus::revoked;
        r.error = ApiError::make(401, "authentication_error", revoked ? "this API key has been revoked" : "invalid API key",
                                 "invalid_api_key", {}, "auth_" + std::string(to_string(a->status)));
        return r;
    }
    auto t = store_.get_tenant(a->tenant);
    if (!t) {
        r.error = ApiError::make(401, "authentication_error", "invalid API key", "invalid_api_key", {}, "auth_no_tenant");
        return r;
    }
    r.principal = Principal{std::move(*t), a->key_id};
    return r;
}

std::vector<std::string> Service::models_for(const Tenant& t) const {
    std::vector<std::string> out;
    for (const auto& name : models_)
        if (t.allows_model(name)) out.push_back(name);
    return out;
}

bool Service::has_model(std::string_view name) const { return models_.find(name) != models_.end(); }

PrepareOutcome Service::prepare(const Principal& who, Endpoint endpoint, std::string_view body) {
    const auto received = Clock::now();
    PrepareOutcome out;
    auto refuse = [&](ApiError e) {
        out.error = std::move(e);
        record_refusal(&who, endpoint_path(endpoint), out.model, out.error, received, new_request_id());
        return std::move(out);
    };
    json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return refuse(bad_request("the body is not valid JSON (UTF-8)", {}, "invalid_json"));
    if (!j.is_object()) return refuse(bad_request("the body must be a JSON object"));

    auto mit = j.find("model");
    if (mit == j.end() || !mit->is_string() || mit->get_ref<const std::string&>().empty())
        return refuse(bad_request("\"model\" is required and must be a string", "model"));
    const std::string model = mit->get<std::string>();
    if (has_model(model)) out.model = model;
    if (!has_model(model))
        return refuse(ApiError::make(404, "invalid_request_error", "The model '" + model + "' does not exist", "model_not_found",
                                     "model"));
    if (!who.tenant.allows_model(model))
        return refuse(ApiError::make(403, "permission_error",
                                     "tenant '" + who.tenant.name + "' may not use the model '" + model + "'",
                                     "model_not_allowed", "model"));

    json guest = j;
    if (endpoint == Endpoint::chat) {
        auto it = j.find("messages");
        if (it == j.end() || !it->is_array() || it->empty())
            return refuse(bad_request("\"messages\" must be a non-empty array", "messages"));
        for (const auto& m : *it)
            if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
                return refuse(bad_request("every message must be an object with a string \"role\"", "messages"));
    } else {
        auto it = j.find("prompt");
        if (it != j.end() && it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
            guest["prompt"] = (*it)[0];
        } else if (it == j.end() || !it->is_string()) {
            return refuse(bad_request("\"prompt\" must be a string (or an array of one string)", "prompt"));
        }
    }

    std::optional<uint64_t> n, max_tokens, max_completion_tokens, seed;
    if (auto e = read_count(j, "n", 1, 16, n); !e.empty()) return refuse(bad_request(e, "n"));
    if (auto e = read_count(j, "max_tokens", 1, INT32_MAX, max_tokens); !e.empty()) return refuse(bad_request(e, "max_tokens"));
    if (auto e = read_count(j, "max_completion_tokens", 1, INT32_MAX, max_completion_tokens); !e.empty())
        return refuse(bad_request(e, "max_completion_tokens"));
    if (auto it = j.find("seed"); it != j.end() && !it->is_null()) {
        if (!it->is_number_integer() || (!it->is_number_unsigned() && it->get<int64_t>() < 0))
            return refuse(bad_request("\"seed\" must be a non-negative integer", "seed"));
        seed = it->get<uint64_t>();
    }
    bool stream = false, include_usage = false;
    if (auto it = j.find("stream"); it != j.end() && !it->is_null()) {
        if (!it->is_boolean()) return refuse(bad_request("\"stream\" must be a boolean", "stream"));
        stream = it->get<bool>();
    }
    if (auto it = j.find("stream_options"); it != j.end() && !it->is_null()) {
        if (!it->is_object()) return refuse(bad_request("\"stream_options\" must be an object", "stream_options"));
        if (auto u = it->find("include_usage"); u != it->end() && !u->is_null()) {
            if (!u->is_boolean()) return refuse(bad_request("\"include_usage\" must be a boolean", "stream_options"));
            include_usage = u->get<bool>();
        }
    }
    const uint32_t cap = who.tenant.limits.max_tokens_per_request;
    const auto requested = max_completion_tokens ? max_completion_tokens : max_tokens;
    if (cap > 0 && requested && *requested > cap)
        return refuse(bad_request("max_tokens " + std::to_string(*requested) + " exceeds this tenant's limit of " +
                                      std::to_string(cap),
                                  max_completion_tokens ? "max_completion_tokens" : "max_tokens"));
    if (cap > 0 && !requested) guest["max_tokens"] = cap;

    // The guest serves one choice per run (n > 1 runs it n times) and always streams, so that the time to
    // the first token is measured for every request; the transport forwards text only when asked to.
    guest.erase("n");
    guest.erase("stream_options");
    guest["stream"] = true;

    auto adm = limiter_.try_acquire(who.tenant.name, who.tenant.limits, Clock::now());
    if (!adm) {
        const auto& rej = adm.rejection();
        metrics_.rate_limited(who.tenant.name, to_string(rej.which));
        ApiError e = ApiError::make(429, "rate_limit_error", rej.message(), "rate_limit_exceeded", {},
                                    "rate_limited_" + std::string(to_string(rej.which)));
        e.retry_after = rej.retry_after_seconds;
        return refuse(std::move(e));
    }

    Job job;
    job.who = who;
    job.endpoint = endpoint;
    job.id = (endpoint == Endpoint::chat ? "chatcmpl-" : "cmpl-") + new_request_id();
    job.created = unix_now();
    job.model = model;
    job.stream = stream;
    job.include_usage = stream && include_usage;
    job.n = n ? static_cast<uint32_t>(*n) : 1;
    job.seed = seed;
    job.guest_body = std::move(guest);
    job.received = received;
    job.permit = std::move(adm.permit());
    out.job = std::move(job);
    return out;
}

void Service::record_refusal(const Principal* who, std::string_view endpoint, std::string_view model,
                             const ApiError& error, Clock::time_point received, const std::string& request_id) {
    const std::string tenant = who ? who->tenant.name : std::string();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - received).count();
    metrics_.request(tenant, model, endpoint, error.status);
    UsageRecord u;
    u.request_id = request_id;
    u.tenant = tenant;
    if (who) u.key_id = who->key_id;
    u.model = std::string(model);
    u.endpoint = std::string(endpoint);
    u.latency_ms = static_cast<uint64_t>(ms);
    u.status = error.status;
    u.error_kind = error.kind;
    u.error_message = error.message;
    if (auto r = store_.record_usage(u); !r) spdlog::error("usage row for {} not recorded: {}", request_id, r.error().message);
    spdlog::info("{} tenant={} {} model={} status={} {}ms: {}", request_id, tenant.empty() ? "-" : tenant, endpoint,
                 model.empty() ? "-" : model, error.status, ms, error.message);
}

void Service::submit(Job job, GenerateHandlers handlers, std::shared_ptr<std::atomic<bool>> cancelled) {
    if (!cancelled) cancelled = std::make_shared<std::atomic<bool>>(false);
    ApiError refused;
    {
        std::lock_guard lk(mu_);
        if (!accepting_) {
            refused = ApiError::make(503, "server_error", "the server is shutting down", "shutting_down");
        } else if (queue_.size() >= opts_.queue_capacity) {
            refused = ApiError::make(503, "server_error", "the server is overloaded; retry later", "overloaded");
            refused.retry_after = 1;
        } else {
            queue_.push_back(std::make_unique<Queued>(Queued{std::move(job), std::move(handlers), std::move(cancelled)}));
            metrics_.set_queue_length(static_cast<double>(queue_.size()));
        }
    }
    if (refused.status == 503) {
        record_refusal(&job.who, endpoint_path(job.endpoint), job.model, refused, job.received, job.id);
        if (handlers.on_error) handlers.on_error(refused);
        return;
    }
    cv_.notify_one();
}

void Service::stop_accepting() {
    std::lock_guard lk(mu_);
    accepting_ = false;
}

void Service::cancel_all() {
    std::lock_guard lk(mu_);
    for (const auto& c : running_cancels_) c->store(true);
    for (const auto& q : queue_) q->cancelled->store(true);
}

Status Service::validate_guest(std::span<const uint8_t> module) {
    auto m = sandbox_->load(module);
    if (!m) return m.error();
    return {};
}

std::string Service::metrics_text() {
    for (const auto& m : engine_->stats()) {
        metrics_.set_running_sequences(m.name, static_cast<double>(m.sequences));
        metrics_.set_kv_cache_bytes(m.name, static_cast<double>(m.kv_bytes));
    }
    return metrics_.serialize();
}

bool Service::accepting() const {
    std::lock_guard lk(mu_);
    return accepting_;
}

size_t Service::in_flight() const {
    std::lock_guard lk(mu_);
    return queue_.size() + running_;
}

void Service::worker_loop() {
    for (;;) {
        std::unique_ptr<Queued> q;
        {
            std::unique_lock lk(mu_);
            cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;
            q = std::move(queue_.front());
            queue_.pop_front();
            ++running_;
            running_cancels_.insert(q->cancelled);
            metrics_.set_queue_length(static_cast<double>(queue_.size()));
        }
        run_job(*q);
        std::lock_guard lk(mu_);
        --running_;
        running_cancels_.erase(q->cancelled);
    }
}

Result<std::shared_ptr<const sandbox::GuestModule>> Service::guest_for(const Tenant& t) {
    if (!t.guest) return default_guest_;
    auto bytes = store_.guest_module(t.name);
    if (!bytes) return make_error(bytes.error().message);
    if (!*bytes) return default_guest_;
    return sandbox_->load(**bytes);
}

void Service::run_job(Queued& q) {
    Job& job = q.job;
    const Tenant& tenant = job.who.tenant;
    std::optional<ApiError> err;
    json choices = json::array();
    uint64_t prompt_tokens = 0, completion_tokens = 0;
    std::optional<Clock::time_point> first_text;
    const bool shutting_down = !accepting();

    if (q.cancelled->load()) {
        sandbox::Outcome o;
        o.error = sandbox::ErrorKind::cancelled;
        err = outcome_error(o, shutting_down);
    }
    auto module = guest_for(tenant);
    if (!err && !module)
        err = ApiError::make(500, "server_error", "the tenant's guest cannot be loaded: " + module.error().message,
                             "guest_load", {}, "load");

    if (!err) {
        sandbox::Limits limits;
        limits.memory_bytes = tenant.limits.guest_memory_bytes;
        limits.time_budget = std::chrono::milliseconds(tenant.limits.guest_time_ms);
        const auto allowed = models_for(tenant);
        for (uint32_t i = 0; i < job.n && !err; ++i) {
            json body = job.guest_body;
            // Choice i of a seeded request uses seed + i: reproducible, yet the choices differ.
            if (job.seed) body["seed"] = *job.seed + i;
            sandbox::Request r;
            r.tenant = tenant.name;
            r.request_id = job.n > 1 ? job.id + "-" + std::to_string(i) : job.id;
            r.body_json = dump(body);
            r.allowed_models = allowed;
            r.limits = limits;
            r.cancelled = q.cancelled;
            r.on_chunk = [&, i](std::string_view text) {
                if (text.empty()) return;
                if (!first_text) first_text = Clock::now();
                if (job.stream && q.handlers.on_text) q.handlers.on_text(i, text);
            };
            r.on_log = [&](sandbox::LogLevel level, std::string_view line) {
                spdlog::log(level == sandbox::LogLevel::error  ? spdlog::level::err
                            : level == sandbox::LogLevel::warn ? spdlog::level::warn
                                                               : spdlog::level::debug,
                            "[guest {} {}] {}", tenant.name, r.request_id, line);
            };
            const sandbox::Outcome out = sandbox_->run(**module, r);
            if (!out.ok()) {
                err = outcome_error(out, shutting_down || !accepting());
                if (out.error != sandbox::ErrorKind::cancelled && !q.cancelled->load())
                    metrics_.guest_error(tenant.name, sandbox::to_string(out.error));
                break;
            }
            json resp = json::parse(out.response, nullptr, false);
            if (!resp.is_object()) {
                err = ApiError::make(500, "server_error", "the tenant's guest wrote a response that is not a JSON object",
                                     "guest_response", {}, "guest_response");
                break;
            }
            if (auto e = resp.find("error"); e != resp.end()) {
                const bool client = string_field(*e, "type") == "invalid_request_error";
                std::string msg = string_field(*e, "message");
                if (msg.empty()) msg = dump(*e);
                err = client ? bad_request(std::move(msg))
                             : ApiError::make(500, "server_error", std::move(msg), "guest_error", {}, "guest_error");
                break;
            }
            auto& c = resp["choices"];
            if (!c.is_array() || c.empty() || !c[0].is_object()) {
                err = ApiError::make(500, "server_error", "the tenant's guest wrote a response without choices",
                                     "guest_response", {}, "guest_response");
                break;
            }
            json choice = c[0];
            choice["index"] = i;
            if (!choice.contains("logprobs")) choice["logprobs"] = nullptr;
            choices.push_back(std::move(choice));
            const auto& u = resp["usage"];
            const uint64_t p = count_field(u, "prompt_tokens");
            const uint64_t g = count_field(u, "completion_tokens");
            if (i == 0) prompt_tokens = p;
            completion_tokens += g;
            limiter_.add_tokens(tenant.name, (i == 0 ? p : 0) + g, Clock::now());
        }
    }

    const auto end = Clock::now();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(end - job.received).count();
    const bool cancelled = q.cancelled->load();
    // Once cancelled, however the guest ended (it may report the engine's refusal as its own error) is the
    // cancellation's doing, not a failure.
    if (cancelled && err && err->status >= 500 && err->kind != "cancelled") {
        sandbox::Outcome o;
        o.error = sandbox::ErrorKind::cancelled;
        err = outcome_error(o, shutting_down || !accepting());
    }
    int status = err ? err->status : (cancelled ? 499 : 200);
    const std::string endpoint(endpoint_path(job.endpoint));
    metrics_.request(tenant.name, job.model, endpoint, status);
    metrics_.tokens(tenant.name, job.model, prompt_tokens, completion_tokens);
    metrics_.request_duration(tenant.name, job.model, std::chrono::duration<double>(end - job.received).count());
    if (first_text) {
        metrics_.time_to_first_token(tenant.name, job.model, std::chrono::duration<double>(*first_text - job.received).count());
        if (completion_tokens > 1)
            metrics_.time_per_output_token(tenant.name, job.model,
                                           std::chrono::duration<double>(end - *first_text).count() /
                                               static_cast<double>(completion_tokens - 1));
    }

    UsageRecord u;
    u.request_id = job.id;
    u.tenant = tenant.name;
    u.key_id = job.who.key_id;
    u.model = job.model;
    u.endpoint = endpoint;
    u.prompt_tokens = prompt_tokens;
    u.completion_tokens = completion_tokens;
    u.latency_ms = static_cast<uint64_t>(ms);
    u.status = status;
    if (err) {
        u.error_kind = err->kind;
        u.error_message = err->message;
    } else if (cancelled) {
        u.error_kind = "cancelled";
    }
    if (auto r = store_.record_usage(u); !r) spdlog::error("usage row for {} not recorded: {}", job.id, r.error().message);
    spdlog::info("{} tenant={} {} model={} status={} {}ms prompt={} completion={}{}", job.id, tenant.name, endpoint,
                 job.model, status, ms, prompt_tokens, completion_tokens, err ? ": " + err->message : std::string());
    job.permit.release();

    if (err) {
        if (q.handlers.on_error) q.handlers.on_error(*err);
        return;
    }
    json resp = {{"id", job.id},
                 {"object", job.endpoint == Endpoint::chat ? "chat.completion" : "text_completion"},
                 {"created", job.created},
                 {"model", job.model},
                 {"system_fingerprint", opts_.system_fingerprint},
                 {"choices", std::move(choices)},
                 {"usage",
                  {{"prompt_tokens", prompt_tokens},
                   {"completion_tokens", completion_tokens},
                   {"total_tokens", prompt_tokens + completion_tokens}}}};
    if (q.handlers.on_done) q.handlers.on_done(std::move(resp));
}

}  // namespace realm::server
