// A small fixed-size thread pool for data-parallel loops (matmul output rows, attention heads).
//
//   realm::kernels::ThreadPool pool;          // hardware_concurrency() threads, caller included
//   pool.parallel_for(n_rows, 16, [&](size_t begin, size_t end, size_t thread) { ... });
//
// parallel_for splits [0, n) into chunks of `grain` items handed out dynamically to the
// worker threads and the calling thread; it returns when every chunk is done. `thread` is a
// dense index in [0, size()) usable for per-thread scratch. Calls from several threads at once
// are serialised (one loop runs at a time). The body must not throw.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace realm::kernels {

class ThreadPool {
public:
    using Body = std::function<void(size_t begin, size_t end, size_t thread)>;

    // n_threads == 0: std::thread::hardware_concurrency() (at least 1). The calling thread
    // counts as one of them, so n_threads - 1 workers are started.
    explicit ThreadPool(size_t n_threads = 0);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    size_t size() const { return n_threads_; }

    void parallel_for(size_t n, size_t grain, const Body& body);

private:
    void worker(size_t index);
    void run_chunks(size_t thread);

    size_t n_threads_ = 1;
    std::vector<std::thread> workers_;
    std::mutex call_mutex_;  // serialises parallel_for calls

    // A loop ends when its items are all claimed and the workers that joined it have left; a
    // worker the OS has not scheduled yet (another process on its core) does not hold it up:
    // it finds the loop closed and goes back to sleep. Joining is a compare-exchange on state_,
    // which carries the loop number, an "open" bit and the number of workers inside, so a late
    // worker can never enter an ended loop or read a newer loop's description half-written.
    // Workers and caller spin for up to 200 us before sleeping on a futex (atomic::wait): a
    // forward pass issues loops back to back, and a futex wake-up costs more than a small loop.
    // Each group on its own cache line: the chunk counter is hit once per chunk by every thread.
    alignas(64) std::atomic<uint32_t> generation_{0};  // the loop number; bumped to start a loop (or to stop)
    std::atomic<bool> stop_{false};
    alignas(64) std::atomic<uint64_t> state_{0};  // (loop << 32) | kOpen | workers inside

    // The current loop; written before state_ opens it (release), read by workers after they
    // joined (acquire), left alone until every joined worker has left.
    alignas(64) const Body* body_ = nullptr;
    size_t n_ = 0;
    size_t grain_ = 1;
    alignas(64) std::atomic<size_t> next_{0};
};

}  // namespace realm::kernels
