#include "server/limiter.hpp"

#include <algorithm>
#include <cmath>

namespace realm::server {

namespace detail {

// One tenant's buckets. Levels are only meaningful while the matching limit is non-zero.
struct TenantState {
    std::mutex mu;
    uint32_t in_flight = 0;
    uint32_t rpm = 0;
    uint64_t tpm = 0;
    double requests = 0;
    double tokens = 0;
    bool started = false;
    Limiter::Clock::time_point last{};

    // Brings the buckets to `now` under `limits`. A new tenant, or a limit that was unlimited, starts full.
    void refill(uint32_t new_rpm, uint64_t new_tpm, Limiter::Clock::time_point now) {
        if (!started) {
            started = true;
            last = now;
            requests = new_rpm;
            tokens = static_cast<double>(new_tpm);
        }
        if (rpm == 0) requests = new_rpm;
        if (tpm == 0) tokens = static_cast<double>(new_tpm);
        rpm = new_rpm;
        tpm = new_tpm;
        // A clock that goes backwards (only possible with an injected one) refills nothing.
        const double dt = now > last ? std::chrono::duration<double>(now - last).count() : 0.0;
        last = std::max(last, now);
        requests = std::min<double>(rpm, requests + dt * rpm / 60.0);
        tokens = std::min<double>(static_cast<double>(tpm), tokens + dt * static_cast<double>(tpm) / 60.0);
    }
};

}  // namespace detail

namespace {

// Seconds until a bucket refilled at `per_minute`/60 per second, now at `level`, holds one unit again.
uint32_t seconds_until_one(double level, double per_minute) {
    const double seconds = (1.0 - level) * 60.0 / per_minute;
    // The epsilon keeps rounding noise (2.0000000001) from adding a whole second.
    const double up = std::ceil(seconds - 1e-9);
    if (!(up >= 1.0)) return 1;
    if (up >= 4294967295.0) return 4294967295u;
    return static_cast<uint32_t>(up);
}

}  // namespace

std::string_view to_string(LimitKind k) {
    switch (k) {
        case LimitKind::requests_per_minute: return "requests_per_minute";
        case LimitKind::tokens_per_minute: return "tokens_per_minute";
        case LimitKind::concurrency: return "max_concurrent";
    }
    return "?";
}

std::string Rejection::message() const {
    return "rate limit exceeded: " + std::string(to_string(which)) + " (retry after " +
           std::to_string(retry_after_seconds) + " s)";
}

Permit::~Permit() { release(); }

Permit::Permit(Permit&& other) noexcept : state_(std::move(other.state_)) {}

Permit& Permit::operator=(Permit&& other) noexcept {
    if (this != &other) {
        release();
        state_ = std::move(other.state_);
    }
    return *this;
}

void Permit::release() {
    if (!state_) return;
    {
        std::lock_guard lock(state_->mu);
        if (state_->in_flight > 0) --state_->in_flight;
    }
    state_.reset();
}

std::shared_ptr<detail::TenantState> Limiter::state(std::string_view tenant) {
    std::lock_guard lock(mu_);
    auto it = tenants_.find(tenant);
    if (it == tenants_.end()) it = tenants_.emplace(std::string(tenant), std::make_shared<detail::TenantState>()).first;
    return it->second;
}

Admission Limiter::try_acquire(std::string_view tenant, const Limits& limits, Clock::time_point now) {
    auto st = state(tenant);
    std::lock_guard lock(st->mu);
    st->refill(limits.requests_per_minute, limits.tokens_per_minute, now);
    if (limits.max_concurrent != 0 && st->in_flight >= limits.max_concurrent)
        return Rejection{LimitKind::concurrency, 1};
    if (st->rpm != 0 && st->requests < 1.0)
        return Rejection{LimitKind::requests_per_minute, seconds_until_one(st->requests, st->rpm)};
    if (st->tpm != 0 && st->tokens < 1.0)
        return Rejection{LimitKind::tokens_per_minute,
                         seconds_until_one(st->tokens, static_cast<double>(st->tpm))};
    if (st->rpm != 0) st->requests -= 1.0;
    ++st->in_flight;
    return Permit(std::move(st));
}

void Limiter::add_tokens(std::string_view tenant, uint64_t n, Clock::time_point now) {
    std::shared_ptr<detail::TenantState> st;
    {
        std::lock_guard lock(mu_);
        auto it = tenants_.find(tenant);
        if (it == tenants_.end()) return;
        st = it->second;
    }
    std::lock_guard lock(st->mu);
    st->refill(st->rpm, st->tpm, now);
    if (st->tpm != 0) st->tokens -= static_cast<double>(n);
}

LimiterSnapshot Limiter::snapshot(std::string_view tenant, Clock::time_point now) {
    std::shared_ptr<detail::TenantState> st;
    {
        std::lock_guard lock(mu_);
        auto it = tenants_.find(tenant);
        if (it == tenants_.end()) return {};
        st = it->second;
    }
    std::lock_guard lock(st->mu);
    st->refill(st->rpm, st->tpm, now);
    return LimiterSnapshot{st->in_flight, st->requests, st->tokens};
}

void Limiter::forget(std::string_view tenant) {
    std::lock_guard lock(mu_);
    if (auto it = tenants_.find(tenant); it != tenants_.end()) tenants_.erase(it);
}

}  // namespace realm::server
