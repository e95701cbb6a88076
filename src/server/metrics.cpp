#include "server/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace realm::server {
namespace {

prometheus::Labels tm(std::string_view tenant, std::string_view model) {
    return {{"tenant", std::string(tenant)}, {"model", std::string(model)}};
}

const prometheus::Histogram::BucketBoundaries& ttft_buckets() {
    static const prometheus::Histogram::BucketBoundaries b{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    return b;
}
const prometheus::Histogram::BucketBoundaries& tpot_buckets() {
    static const prometheus::Histogram::BucketBoundaries b{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
    return b;
}
const prometheus::Histogram::BucketBoundaries& duration_buckets() {
    static const prometheus::Histogram::BucketBoundaries b{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
    return b;
}

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
    auto& r = *registry_;
    requests_ = &prometheus::BuildCounter().Name("realm_requests_total").Help("Requests answered, by HTTP status").Register(r);
    prompt_tokens_ = &prometheus::BuildCounter().Name("realm_prompt_tokens_total").Help("Prompt tokens processed").Register(r);
    completion_tokens_ =
        &prometheus::BuildCounter().Name("realm_completion_tokens_total").Help("Completion tokens generated").Register(r);
    ttft_ = &prometheus::BuildHistogram()
                 .Name("realm_time_to_first_token_seconds")
                 .Help("Time from receiving a request to its first generated text")
                 .Register(r);
    tpot_ = &prometheus::BuildHistogram()
                 .Name("realm_time_per_output_token_seconds")
                 .Help("Mean time between output tokens after the first, per request")
                 .Register(r);
    duration_ = &prometheus::BuildHistogram()
                     .Name("realm_request_duration_seconds")
                     .Help("End-to-end latency of generation requests")
                     .Register(r);
    guest_errors_ = &prometheus::BuildCounter().Name("realm_guest_errors_total").Help("Guest failures by sandbox error kind").Register(r);
    rate_limited_ = &prometheus::BuildCounter().Name("realm_rate_limited_total").Help("Requests refused by a tenant limit").Register(r);
    queue_length_ = &prometheus::BuildGauge().Name("realm_queue_length").Help("Admitted requests waiting for a worker").Register(r).Add({});
    running_sequences_ =
        &prometheus::BuildGauge().Name("realm_running_sequences").Help("Open engine sequences (KV-cache slots)").Register(r);
    kv_cache_bytes_ = &prometheus::BuildGauge().Name("realm_kv_cache_bytes").Help("KV-cache bytes held by open sequences").Register(r);
}

Metrics::~Metrics() = default;

void Metrics::request(std::string_view tenant, std::string_view model, std::string_view endpoint, int status) {
    requests_
        ->Add({{"tenant", std::string(tenant)},
               {"model", std::string(model)},
               {"endpoint", std::string(endpoint)},
               {"status", std::to_string(status)}})
        .Increment();
}

void Metrics::tokens(std::string_view tenant, std::string_view model, uint64_t prompt, uint64_t completion) {
    prompt_tokens_->Add(tm(tenant, model)).Increment(static_cast<double>(prompt));
    completion_tokens_->Add(tm(tenant, model)).Increment(static_cast<double>(completion));
}

void Metrics::time_to_first_token(std::string_view tenant, std::string_view model, double seconds) {
    ttft_->Add(tm(tenant, model), ttft_buckets()).Observe(seconds);
}
void Metrics::time_per_output_token(std::string_view tenant, std::string_view model, double seconds) {
    tpot_->Add(tm(tenant, model), tpot_buckets()).Observe(seconds);
}
void Metrics::request_duration(std::string_view tenant, std::string_view model, double seconds) {
    duration_->Add(tm(tenant, model), duration_buckets()).Observe(seconds);
}

void Metrics::guest_error(std::string_view tenant, std::string_view kind) {
    guest_errors_->Add({{"tenant", std::string(tenant)}, {"kind", std::string(kind)}}).Increment();
}
void Metrics::rate_limited(std::string_view tenant, std::string_view limit) {
    rate_limited_->Add({{"tenant", std::string(tenant)}, {"limit", std::string(limit)}}).Increment();
}

void Metrics::set_queue_length(double n) { queue_length_->Set(n); }
void Metrics::set_running_sequences(std::string_view model, double n) {
    running_sequences_->Add({{"model", std::string(model)}}).Set(n);
}
void Metrics::set_kv_cache_bytes(std::string_view model, double bytes) {
    kv_cache_bytes_->Add({{"model", std::string(model)}}).Set(bytes);
}

std::string Metrics::serialize() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

}  // namespace realm::server
