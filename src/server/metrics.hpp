// The server's Prometheus metrics (prometheus-cpp Registry, served as text at GET /metrics). Names are
// stable; docs/ARCHITECTURE.md lists them. Thread-safe: every method may be called from any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace realm::server {

class Metrics {
public:
    Metrics();
    ~Metrics();
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    // realm_requests_total{tenant,model,endpoint,status}
    void request(std::string_view tenant, std::string_view model, std::string_view endpoint, int status);
    // realm_prompt_tokens_total / realm_completion_tokens_total{tenant,model}
    void tokens(std::string_view tenant, std::string_view model, uint64_t prompt, uint64_t completion);
    // Histograms {tenant,model}, in seconds.
    void time_to_first_token(std::string_view tenant, std::string_view model, double seconds);
    void time_per_output_token(std::string_view tenant, std::string_view model, double seconds);
    void request_duration(std::string_view tenant, std::string_view model, double seconds);
    // realm_guest_errors_total{tenant,kind}: sandbox error kinds (trap, deadline, memory_limit, ...).
    void guest_error(std::string_view tenant, std::string_view kind);
    // realm_rate_limited_total{tenant,limit}
    void rate_limited(std::string_view tenant, std::string_view limit);
    // Gauges: realm_queue_length; realm_running_sequences{model} and realm_kv_cache_bytes{model} (the engine's
    // open sequences and the KV-cache memory they hold).
    void set_queue_length(double n);
    void set_running_sequences(std::string_view model, double n);
    void set_kv_cache_bytes(std::string_view model, double bytes);

    // The Prometheus text exposition format.
    std::string serialize() const;

private:
    std::shared_ptr<prometheus::Registry> registry_;
    prometheus::Family<prometheus::Counter>* requests_;
    prometheus::Family<prometheus::Counter>* prompt_tokens_;
    prometheus::Family<prometheus::Counter>* completion_tokens_;
    prometheus::Family<prometheus::Histogram>* ttft_;
    prometheus::Family<prometheus::Histogram>* tpot_;
    prometheus::Family<prometheus::Histogram>* duration_;
    prometheus::Family<prometheus::Counter>* guest_errors_;
    prometheus::Family<prometheus::Counter>* rate_limited_;
    prometheus::Gauge* queue_length_;
    prometheus::Family<prometheus::Gauge>* running_sequences_;
    prometheus::Family<prometheus::Gauge>* kv_cache_bytes_;
};

}  // namespace realm::server
