#include "server/limiter.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

using namespace realm::server;
using namespace std::chrono_literals;

namespace {

Limits only(uint32_t rpm, uint64_t tpm, uint32_t concurrent) {
    Limits l;
    l.requests_per_minute = rpm;
    l.tokens_per_minute = tpm;
    l.max_concurrent = concurrent;
    return l;
}

const Limiter::Clock::time_point t0 = Limiter::Clock::time_point{} + 1000s;

}  // namespace

TEST(Limiter, RequestsPerMinuteWithContinuousRefill) {
    Limiter lim;
    const Limits l = only(3, 0, 0);  // one request every 20 s
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(lim.try_acquire("a", l, t0).ok()) << i;
    auto r = lim.try_acquire("a", l, t0);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.rejection().which, LimitKind::requests_per_minute);
    EXPECT_EQ(r.rejection().retry_after_seconds, 20u);

    auto r10 = lim.try_acquire("a", l, t0 + 10s);  // half a request refilled
    ASSERT_FALSE(r10.ok());
    EXPECT_EQ(r10.rejection().retry_after_seconds, 10u);
    auto r19 = lim.try_acquire("a", l, t0 + 19500ms);
    ASSERT_FALSE(r19.ok());
    EXPECT_EQ(r19.rejection().retry_after_seconds, 1u);
    EXPECT_TRUE(lim.try_acquire("a", l, t0 + 20s).ok());  // exactly what retry_after promised
    EXPECT_FALSE(lim.try_acquire("a", l, t0 + 20s).ok());

    // The bucket never holds more than a minute's worth.
    EXPECT_NEAR(lim.snapshot("a", t0 + 1h).requests_available, 3.0, 1e-9);
}

TEST(Limiter, RetryAfterIsHonest) {
    // Whatever the rejection says, waiting that long (and not one second less) admits the request.
    Limiter lim;
    const Limits l = only(7, 0, 0);
    auto now = t0;
    for (int i = 0; i < 7; ++i) ASSERT_TRUE(lim.try_acquire("a", l, now).ok());
    for (int round = 0; round < 5; ++round) {
        auto r = lim.try_acquire("a", l, now);
        ASSERT_FALSE(r.ok());
        const auto wait = std::chrono::seconds(r.rejection().retry_after_seconds);
        if (wait > 1s) EXPECT_FALSE(lim.try_acquire("a", l, now + wait - 1s).ok());  // a rejection consumes nothing
        now += wait;
        ASSERT_TRUE(lim.try_acquire("a", l, now).ok()) << round;
    }
}

TEST(Limiter, TokensPerMinuteChargesAfterTheFact) {
    Limiter lim;
    const Limits l = only(0, 600, 0);  // 10 tokens per second
    ASSERT_TRUE(lim.try_acquire("a", l, t0).ok());
    lim.add_tokens("a", 650, t0);  // more than the budget: debt of 50
    EXPECT_NEAR(lim.snapshot("a", t0).tokens_available, -50.0, 1e-9);
    auto r = lim.try_acquire("a", l, t0);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.rejection().which, LimitKind::tokens_per_minute);
    EXPECT_EQ(r.rejection().retry_after_seconds, 6u);  // -50 + 10 t >= 1  =>  t >= 5.1 s
    EXPECT_FALSE(lim.try_acquire("a", l, t0 + 5s).ok());
    EXPECT_TRUE(lim.try_acquire("a", l, t0 + 6s).ok());

    lim.add_tokens("nobody", 1000, t0);  // never admitted: ignored
    EXPECT_EQ(lim.snapshot("nobody", t0).in_flight, 0u);
}

TEST(Limiter, ConcurrencyPermitsReleasedByRaii) {
    Limiter lim;
    const Limits l = only(0, 0, 2);
    {
        auto a = lim.try_acquire("a", l, t0);
        auto b = lim.try_acquire("a", l, t0);
        ASSERT_TRUE(a.ok() && b.ok());
        EXPECT_EQ(lim.snapshot("a", t0).in_flight, 2u);
        auto c = lim.try_acquire("a", l, t0);
        ASSERT_FALSE(c.ok());
        EXPECT_EQ(c.rejection().which, LimitKind::concurrency);
        EXPECT_GE(c.rejection().retry_after_seconds, 1u);
        EXPECT_NE(c.rejection().message().find("max_concurrent"), std::string::npos);

        // Moving a permit does not release (or double-release) the slot.
        Permit moved = std::move(a.permit());
        EXPECT_FALSE(a.permit().held());
        EXPECT_TRUE(moved.held());
        EXPECT_EQ(lim.snapshot("a", t0).in_flight, 2u);
        moved.release();
        moved.release();
        EXPECT_EQ(lim.snapshot("a", t0).in_flight, 1u);
        EXPECT_TRUE(lim.try_acquire("a", l, t0).ok());  // temporary: released at the end of the statement
        EXPECT_EQ(lim.snapshot("a", t0).in_flight, 1u);
    }
    EXPECT_EQ(lim.snapshot("a", t0).in_flight, 0u);
}

TEST(Limiter, RejectionConsumesNothing) {
    Limiter lim;
    const Limits l = only(2, 0, 1);
    auto held = lim.try_acquire("a", l, t0);
    ASSERT_TRUE(held.ok());
    for (int i = 0; i < 10; ++i) EXPECT_FALSE(lim.try_acquire("a", l, t0).ok());
    EXPECT_NEAR(lim.snapshot("a", t0).requests_available, 1.0, 1e-9);
    held.permit().release();
    EXPECT_TRUE(lim.try_acquire("a", l, t0).ok());
}

TEST(Limiter, UnlimitedAndPerTenantIsolation) {
    Limiter lim;
    const Limits none = only(0, 0, 0);
    std::vector<Permit> permits;
    for (int i = 0; i < 1000; ++i) {
        auto a = lim.try_acquire("free", none, t0);
        ASSERT_TRUE(a.ok());
        permits.push_back(std::move(a.permit()));
    }
    lim.add_tokens("free", 1u << 30, t0);
    EXPECT_TRUE(lim.try_acquire("free", none, t0).ok());

    const Limits one = only(1, 0, 0);
    EXPECT_TRUE(lim.try_acquire("a", one, t0).ok());
    EXPECT_FALSE(lim.try_acquire("a", one, t0).ok());
    EXPECT_TRUE(lim.try_acquire("b", one, t0).ok());
}

TEST(Limiter, LimitChangesKeepTheLevel) {
    Limiter lim;
    ASSERT_TRUE(lim.try_acquire("a", only(1, 0, 0), t0).ok());
    EXPECT_FALSE(lim.try_acquire("a", only(1, 0, 0), t0).ok());
    // Raised to 2 per second: the empty bucket now refills fast, it is not reset to full.
    EXPECT_FALSE(lim.try_acquire("a", only(120, 0, 0), t0).ok());
    EXPECT_TRUE(lim.try_acquire("a", only(120, 0, 0), t0 + 500ms).ok());
    // Lowered: the level is capped to the new capacity.
    lim.try_acquire("a", only(120, 0, 0), t0 + 1h).permit().release();
    EXPECT_LE(lim.snapshot("a", t0 + 1h).requests_available, 120.0);
    ASSERT_TRUE(lim.try_acquire("a", only(2, 0, 0), t0 + 1h).ok());
    EXPECT_NEAR(lim.snapshot("a", t0 + 1h).requests_available, 1.0, 1e-9);
    // Unlimited, then limited again: starts full.
    ASSERT_TRUE(lim.try_acquire("a", only(0, 0, 0), t0 + 1h).ok());
    EXPECT_TRUE(lim.try_acquire("a", only(5, 0, 0), t0 + 1h).ok());
    EXPECT_NEAR(lim.snapshot("a", t0 + 1h).requests_available, 4.0, 1e-9);
}

TEST(Limiter, ClockGoingBackwardsRefillsNothing) {
    Limiter lim;
    const Limits l = only(1, 0, 0);
    ASSERT_TRUE(lim.try_acquire("a", l, t0 + 60s).ok());
    EXPECT_FALSE(lim.try_acquire("a", l, t0).ok());
    EXPECT_FALSE(lim.try_acquire("a", l, t0 + 60s).ok());
    EXPECT_TRUE(lim.try_acquire("a", l, t0 + 120s).ok());
}

TEST(Limiter, PermitOutlivesLimiterAndForget) {
    Permit p;
    EXPECT_FALSE(p.held());
    {
        Limiter lim;
        auto a = lim.try_acquire("a", only(1, 0, 1), t0);
        ASSERT_TRUE(a.ok());
        p = std::move(a.permit());
        lim.forget("a");
        EXPECT_TRUE(lim.try_acquire("a", only(1, 0, 1), t0).ok());  // fresh state
    }
    EXPECT_TRUE(p.held());
    p.release();  // the state it points at is still alive
    EXPECT_FALSE(p.held());
}

TEST(Limiter, ConcurrentAcquireNeverExceedsTheLimit) {
    Limiter lim;
    const Limits l = only(0, 0, 3);
    std::atomic<int> inside{0}, max_inside{0}, admitted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 2000; ++i) {
                auto a = lim.try_acquire("a", l, Limiter::Clock::now());
                if (!a.ok()) continue;
                ++admitted;
                const int now = ++inside;
                int prev = max_inside.load();
                while (now > prev && !max_inside.compare_exchange_weak(prev, now)) {
                }
                lim.add_tokens("a", 1, Limiter::Clock::now());
                --inside;
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_LE(max_inside.load(), 3);
    EXPECT_GT(admitted.load(), 0);
    EXPECT_EQ(lim.snapshot("a", Limiter::Clock::now()).in_flight, 0u);
}
