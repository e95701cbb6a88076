#include "kernels/threadpool.hpp"

#include <algorithm>

namespace realm::kernels {

ThreadPool::ThreadPool(size_t n_threads) {
    if (n_threads == 0) n_threads = std::max<size_t>(1, std::thread::hardware_concurrency());
    n_threads_ = n_threads;
    workers_.reserve(n_threads_ - 1);
    for (size_t i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
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
    uint64_t seen = 0;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
        }
        run_chunks(index);
        {
            std::lock_guard lock(mutex_);
            if (--active_ == 0) done_.notify_one();
        }
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
    {
        std::lock_guard lock(mutex_);
        body_ = &body;
        n_ = n;
        grain_ = grain;
        next_.store(0, std::memory_order_relaxed);
        active_ = workers_.size();
        ++generation_;
    }
    wake_.notify_all();
    run_chunks(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return active_ == 0; });
    body_ = nullptr;
}

}  // namespace realm::kernels
