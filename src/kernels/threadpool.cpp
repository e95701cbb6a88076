#include "kernels/threadpool.hpp"

#include <algorithm>
#include <chrono>

namespace realm::kernels {
namespace {

// How long to spin before sleeping: longer than the gaps between the loops of a forward pass
// (with a 50 us spin SmolLM2 decode on 2 threads fell to 28 tok/s, a quarter of 1 thread, as
// workers slept and paid the futex wake-up every loop; with 200 us it is 228 tok/s, 1.9x one
// thread), short enough that idle workers soon stop taking CPU from other processes. Measured
// in time, not iterations: a pause costs ~10 cycles on some CPUs and ~140 on others.
constexpr auto kSpinFor = std::chrono::microseconds(200);

constexpr uint64_t kOpen = uint64_t{1} << 31;
constexpr uint64_t kCountMask = kOpen - 1;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Spins until done() or kSpinFor has passed; returns done()'s last value.
template <class Done>
bool spin(Done done) {
    const auto deadline = std::chrono::steady_clock::now() + kSpinFor;
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            if (done()) return true;
            cpu_relax();
        }
        if (std::chrono::steady_clock::now() >= deadline) return done();
    }
}

// Returns once `a` differs from `old` (acquire).
uint32_t wait_change(const std::atomic<uint32_t>& a, uint32_t old) {
    uint32_t v = old;
    if (spin([&] { return (v = a.load(std::memory_order_acquire)) != old; })) return v;
    for (;;) {
        a.wait(old, std::memory_order_acquire);
        v = a.load(std::memory_order_acquire);
        if (v != old) return v;
    }
}

}  // namespace

ThreadPool::ThreadPool(size_t n_threads) {
    if (n_threads == 0) n_threads = std::max<size_t>(1, std::thread::hardware_concurrency());
    n_threads_ = n_threads;
    workers_.reserve(n_threads_ - 1);
    for (size_t i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks(size_t thread) {
    for (;;) {
        const size_t begin = next_.fetch_add(grain_, std::memory_order_relaxed);
        if (begin >= n_) break;
        (*body_)(begin, std::min(n_, begin + grain_), thread);
    }
}

void ThreadPool::worker(size_t index) {
    uint32_t seen = 0;
    for (;;) {
        seen = wait_change(generation_, seen);
        if (stop_.load(std::memory_order_relaxed)) return;
        // Join loop `seen` if it is still open; else it has ended (or a newer one started and
        // generation_ will say so).
        uint64_t s = state_.load(std::memory_order_acquire);
        bool joined = false;
        while ((s >> 32) == seen && (s & kOpen) != 0) {
            if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
                joined = true;
                break;
            }
        }
        if (!joined) continue;
        run_chunks(index);
        // release: the caller's acquire of "nobody inside" sees this worker's writes.
        const uint64_t after = state_.fetch_sub(1, std::memory_order_acq_rel) - 1;
        if ((after & kCountMask) == 0 && (after & kOpen) == 0) state_.notify_one();
    }
}

void ThreadPool::parallel_for(size_t n, size_t grain, const Body& body) {
    if (n == 0) return;
    grain = std::max<size_t>(1, grain);
    if (workers_.empty() || n <= grain) {
        for (size_t b = 0; b < n; b += grain) body(b, std::min(n, b + grain), 0);
        return;
    }
    std::lock_guard call(call_mutex_);
    // No worker is inside (the previous call waited for them), so the description is ours.
    body_ = &body;
    n_ = n;
    grain_ = grain;
    next_.store(0, std::memory_order_relaxed);
    const uint32_t loop = generation_.load(std::memory_order_relaxed) + 1;
    state_.store((uint64_t{loop} << 32) | kOpen, std::memory_order_release);
    generation_.store(loop, std::memory_order_release);
    generation_.notify_all();
    run_chunks(0);
    // Every chunk is claimed: close the loop to latecomers, then wait for those inside.
    uint64_t s = state_.fetch_and(~kOpen, std::memory_order_acq_rel) & ~kOpen;
    if ((s & kCountMask) != 0) {
        spin([&] { return ((s = state_.load(std::memory_order_acquire)) & kCountMask) == 0; });
        while ((s & kCountMask) != 0) {
            state_.wait(s, std::memory_order_acquire);
            s = state_.load(std::memory_order_acquire);
        }
    }
    body_ = nullptr;
}

}  // namespace realm::kernels
