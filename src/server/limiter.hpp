// In-memory, thread-safe per-tenant rate limiter: requests per minute, tokens per minute and concurrent
// requests.
//
// Algorithm: two token buckets per tenant, refilled continuously (not in per-minute steps) at limit/60 per
// second up to a capacity of one minute's limit. A request needs one whole request-token; the token bucket
// only needs to be non-empty to admit a request (a request's size is unknown until it has run), and
// add_tokens charges the tokens actually used, which may drive it negative: the debt then delays the
// tenant's next requests. Concurrency is a counter held by an RAII Permit.
//
//   realm::server::Limiter limiter;
//   auto adm = limiter.try_acquire(tenant.name, tenant.limits, Limiter::Clock::now());
//   if (!adm) { 429 with "Retry-After: " + std::to_string(adm.rejection().retry_after_seconds) }
//   ... run; limiter.add_tokens(tenant.name, n, Limiter::Clock::now()) as tokens are produced ...
//   // adm (and its Permit) destroyed: the concurrency slot is released
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>

#include "server/store.hpp"

namespace realm::server {

enum class LimitKind { requests_per_minute, tokens_per_minute, concurrency };
std::string_view to_string(LimitKind k);

struct Rejection {
    LimitKind which = LimitKind::requests_per_minute;
    uint32_t retry_after_seconds = 1;  // >= 1; for concurrency a fixed short hint (slots free unpredictably)
    std::string message() const;        // e.g. "rate limit exceeded: requests_per_minute (retry after 3 s)"
};

namespace detail {
struct TenantState;
}

// Holds one of the tenant's concurrency slots until destroyed (or release()d). Move-only. May outlive the
// Limiter that issued it.
class Permit {
public:
    Permit() = default;
    ~Permit();
    Permit(Permit&& other) noexcept;
    Permit& operator=(Permit&& other) noexcept;
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;

    void release();  // gives the slot back now; idempotent
    bool held() const { return state_ != nullptr; }

private:
    friend class Limiter;
    explicit Permit(std::shared_ptr<detail::TenantState> state) : state_(std::move(state)) {}
    std::shared_ptr<detail::TenantState> state_;
};

// The outcome of try_acquire: a Permit, or a Rejection for a 429.
class [[nodiscard]] Admission {
public:
    Admission(Permit p) : v_(std::move(p)) {}       // NOLINT(implicit)
    Admission(Rejection r) : v_(std::move(r)) {}    // NOLINT(implicit)
    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    Permit& permit() { return std::get<0>(v_); }
    const Rejection& rejection() const { return std::get<1>(v_); }

private:
    std::variant<Permit, Rejection> v_;
};

// A tenant's current standing, for metrics and tests.
struct LimiterSnapshot {
    uint32_t in_flight = 0;
    double requests_available = 0;  // request-tokens in the bucket
    double tokens_available = 0;    // may be negative (debt)
};

class Limiter {
public:
    using Clock = std::chrono::steady_clock;

    // Admits a request of `tenant` under `limits` (only requests_per_minute, tokens_per_minute and
    // max_concurrent are used; 0 = unlimited) at time `now`, or says which limit refused it and when to retry.
    // Checks concurrency first, then requests, then tokens; a rejected request consumes nothing. Limits may
    // change between calls (tenant updated): the buckets keep their level, capped to the new capacity.
    Admission try_acquire(std::string_view tenant, const Limits& limits, Clock::time_point now);

    // Charges `n` tokens (prompt or completion) to the tenant's per-minute budget. Unknown tenants (never
    // admitted) are ignored.
    void add_tokens(std::string_view tenant, uint64_t n, Clock::time_point now);

    LimiterSnapshot snapshot(std::string_view tenant, Clock::time_point now);

    // Drops a tenant's buckets (e.g. after it was removed). Outstanding permits stay valid.
    void forget(std::string_view tenant);

private:
    std::shared_ptr<detail::TenantState> state(std::string_view tenant);

    std::mutex mu_;
    std::map<std::string, std::shared_ptr<detail::TenantState>, std::less<>> tenants_;
};

}  // namespace realm::server
