// Continuous batching: many threads (one per request) feed tokens to their own sequences of one
// model, and a scheduler thread runs their work together, one forward pass per step, so that the
// weights are read once per step for all running sequences.
//
//   realm::engine::Batcher batcher(model);
//   // on any thread, for a sequence it owns:
//   if (auto s = batcher.feed(seq, tokens, &cancelled); !s) ...;   // blocks until appended
//   auto logits = seq.logits();
//
// Each step takes every waiting decode (one token) and then prompt chunks of at most
// prefill_chunk tokens per sequence, in rotating order, up to max_batch_tokens: a new sequence
// joins at the next step boundary, a finished one leaves at once, and a long prompt is spread over
// several steps so that running streams keep getting tokens meanwhile. Results do not depend on
// the batching (Model::forward_batch is batch-independent), so a request produces the same tokens
// alone or among others.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <thread>

#include "gguf/result.hpp"
#include "model/model.hpp"

namespace realm::engine {

struct BatcherOptions {
    size_t max_batch_tokens = 256;  // tokens in one forward pass
    size_t prefill_chunk = 64;      // most prompt tokens one sequence adds in one pass
};

struct BatcherStats {
    size_t waiting = 0;           // feeds queued or in progress
    uint64_t steps = 0;           // forward passes run
    uint64_t tokens = 0;          // tokens processed
    uint64_t batched_steps = 0;   // steps that served more than one sequence
    size_t max_sequences_in_step = 0;
};

class Batcher {
public:
    explicit Batcher(const model::Model& model, BatcherOptions opts = {});
    // Fails the feeds still waiting ("shutting down") and stops the scheduler thread.
    ~Batcher();
    Batcher(const Batcher&) = delete;
    Batcher& operator=(const Batcher&) = delete;

    // Appends `tokens` to `seq` (which must not be used by anyone else meanwhile) and returns once
    // they are all in, with seq.logits() those after the last one. Invalid input (token ids,
    // context overflow, another model's sequence) is refused before anything runs. When `cancel`
    // becomes true the feed stops at the next step boundary with an error; the sequence then holds
    // the chunks already processed (seq.n_past() tells how many).
    Status feed(model::Sequence& seq, std::span<const int32_t> tokens, const std::atomic<bool>* cancel = nullptr);

    BatcherStats stats() const;

private:
    struct Job {
        model::Sequence* seq = nullptr;
        std::span<const int32_t> tokens;
        size_t done = 0;       // tokens appended so far
        size_t taking = 0;     // tokens in the step now running
        const std::atomic<bool>* cancel = nullptr;
        bool finished = false;
        Status result;
    };

    void run();
    void finish(Job& job, Status result);  // with mu_ held

    const model::Model& model_;
    const BatcherOptions opts_;

    mutable std::mutex mu_;
    std::condition_variable work_cv_;   // scheduler: a job arrived / stop
    std::condition_variable done_cv_;   // callers: a job finished
    std::deque<Job*> queue_;
    size_t rotate_ = 0;                 // where the next step starts looking for prompt chunks
    size_t last_step_jobs_ = 0;         // jobs served by the previous step
    std::chrono::nanoseconds last_step_time_{0};
    bool stop_ = false;
    BatcherStats stats_;
    std::thread thread_;
};

}  // namespace realm::engine
