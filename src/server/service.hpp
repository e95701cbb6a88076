// The transport-independent core of the server: authentication, request validation, admission (tenant
// limits, then a bounded queue in front of a fixed pool of worker threads), running each request through
// its tenant's guest in the sandbox, usage rows and metrics. The HTTP/SSE and WebSocket front ends both
// drive it:
//
//   auto who = service.authenticate(bearer_token);             // 401 when !who.principal
//   auto prep = service.prepare(*who.principal, Endpoint::chat, body);  // 400/403/404/429 when it fails
//   service.submit(std::move(*prep.job), handlers, cancelled);  // 503 when the queue is full
//
// Exactly one of handlers.on_done / handlers.on_error is called once per submitted job, from a worker
// thread (or synchronously from submit when it is refused); on_text only before that and only for
// streaming requests.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "gguf/result.hpp"
#include "sandbox/engine_backend.hpp"
#include "sandbox/sandbox.hpp"
#include "server/limiter.hpp"
#include "server/metrics.hpp"
#include "server/store.hpp"

namespace realm::server {

// An OpenAI-style error: {"error": {"message", "type", "param", "code"}} with an HTTP status.
struct ApiError {
    int status = 500;
    std::string type;     // invalid_request_error, authentication_error, permission_error, ...
    std::string message;
    std::string code;     // empty: null
    std::string param;    // empty: null
    uint32_t retry_after = 0;  // seconds, for 429 (Retry-After header)
    std::string kind;     // short machine name for usage rows and logs (e.g. "auth_unknown", "trap")

    // kind defaults to code, else type.
    static ApiError make(int status, std::string type, std::string message, std::string code = {},
                         std::string param = {}, std::string kind = {});
    nlohmann::json body() const;
};

enum class Endpoint { chat, completions };
std::string_view endpoint_path(Endpoint e);

struct Principal {
    Tenant tenant;
    int64_t key_id = 0;
};

struct AuthOutcome {
    std::optional<Principal> principal;
    ApiError error;  // when !principal
};

// A validated, admitted request ready to run (holds the tenant's concurrency permit). Move-only.
struct Job {
    Principal who;
    Endpoint endpoint = Endpoint::chat;
    std::string id;             // chatcmpl-... / cmpl-...
    int64_t created = 0;        // unix seconds
    std::string model;
    bool stream = false;
    bool include_usage = false; // stream_options.include_usage
    uint32_t n = 1;             // choices
    std::optional<uint64_t> seed;
    nlohmann::json guest_body;  // the body handed to the guest for choice 0 (n = 1, max_tokens capped)
    std::chrono::steady_clock::time_point received;
    Permit permit;
};

struct PrepareOutcome {
    std::optional<Job> job;
    ApiError error;  // when !job
    std::string model;  // the requested model when known (for usage rows of refused requests)
};

struct GenerateHandlers {
    std::function<void(uint32_t choice, std::string_view text)> on_text;
    std::function<void(nlohmann::json response)> on_done;  // the complete OpenAI response object
    std::function<void(const ApiError& error)> on_error;
};

struct ServiceOptions {
    uint32_t workers = 8;           // requests running in guests at once
    uint32_t queue_capacity = 64;   // admitted requests waiting for a worker; beyond: 503
    std::string system_fingerprint = "realm";
};

class Service {
public:
    // `engine` serves the models (its model_names() at this point); `default_guest` is the module tenants
    // without their own run. Starts the worker threads.
    static Result<std::unique_ptr<Service>> create(std::shared_ptr<sandbox::EngineBackend> engine, Store& store,
                                                   std::span<const uint8_t> default_guest,
                                                   const ServiceOptions& opts);
    ~Service();  // stops the workers after the queue drains
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;

    // `authorization`: the Authorization header value ("Bearer <key>"), or a bare key.
    AuthOutcome authenticate(std::string_view authorization);
    PrepareOutcome prepare(const Principal& who, Endpoint endpoint, std::string_view body);
    void submit(Job job, GenerateHandlers handlers, std::shared_ptr<std::atomic<bool>> cancelled);

    // Models a tenant may use, in name order.
    std::vector<std::string> models_for(const Tenant& t) const;
    bool has_model(std::string_view name) const;

    // Records a usage row and the request metrics of a request refused before it ran (auth, validation,
    // limits, ...). `who` may be null (no tenant authenticated).
    void record_refusal(const Principal* who, std::string_view endpoint, std::string_view model,
                        const ApiError& error, std::chrono::steady_clock::time_point received,
                        const std::string& request_id);

    // Shutdown: refuse new jobs (503), then cancel every running and queued one.
    void stop_accepting();
    void cancel_all();
    size_t in_flight() const;  // queued + running jobs
    bool accepting() const;

    // Compiles and link-checks a guest module as requests would load it (admin guest registration).
    Status validate_guest(std::span<const uint8_t> module);
    // Drops a removed tenant's rate-limit state.
    void forget_tenant(std::string_view name) { limiter_.forget(name); }

    Metrics& metrics() { return metrics_; }
    // The Prometheus text, with the engine's live figures read now.
    std::string metrics_text();
    Store& store() { return store_; }
    std::string new_request_id();

private:
    struct Queued;
    Service(std::shared_ptr<sandbox::EngineBackend> engine, Store& store, const ServiceOptions& opts);
    void worker_loop();
    void run_job(Queued& q);
    Result<std::shared_ptr<const sandbox::GuestModule>> guest_for(const Tenant& t);

    ServiceOptions opts_;
    Store& store_;
    Metrics metrics_;
    Limiter limiter_;
    std::set<std::string, std::less<>> models_;
    std::shared_ptr<sandbox::EngineBackend> engine_;
    std::unique_ptr<sandbox::Sandbox> sandbox_;
    std::shared_ptr<const sandbox::GuestModule> default_guest_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::unique_ptr<Queued>> queue_;
    std::set<std::shared_ptr<std::atomic<bool>>> running_cancels_;
    size_t running_ = 0;
    bool accepting_ = true;
    bool stopping_ = false;
    std::atomic<uint64_t> next_id_{0};
    std::vector<std::thread> workers_;
};

}  // namespace realm::server
