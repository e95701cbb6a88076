#include "engine/batcher.hpp"

#include <algorithm>
#include <string>
#include <vector>

namespace realm::engine {

Batcher::Batcher(const model::Model& model, BatcherOptions opts)
    : model_(model), opts_{std::max<size_t>(1, opts.max_batch_tokens), std::max<size_t>(1, opts.prefill_chunk)} {
    thread_ = std::thread([this] { run(); });
}

Batcher::~Batcher() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    work_cv_.notify_all();
    thread_.join();
}

BatcherStats Batcher::stats() const {
    std::lock_guard lock(mu_);
    BatcherStats s = stats_;
    s.waiting = queue_.size();
    return s;
}

void Batcher::finish(Job& job, Status result) {
    job.result = std::move(result);
    job.finished = true;
}

Status Batcher::feed(model::Sequence& seq, std::span<const int32_t> tokens, const std::atomic<bool>* cancel) {
    if (tokens.empty()) return {};
    const uint32_t n_vocab = model_.hparams().n_vocab;
    for (int32_t id : tokens) {
        if (id < 0 || static_cast<uint32_t>(id) >= n_vocab)
            return make_error("token id " + std::to_string(id) + " is outside the vocabulary (" +
                              std::to_string(n_vocab) + " tokens)");
    }
    if (tokens.size() > size_t{seq.n_ctx()} - seq.n_past())
        return make_error("context full: " + std::to_string(seq.n_past()) + " + " + std::to_string(tokens.size()) +
                          " tokens > n_ctx " + std::to_string(seq.n_ctx()));
    Job job;
    job.seq = &seq;
    job.tokens = tokens;
    job.cancel = cancel;
    std::unique_lock lock(mu_);
    if (stop_) return make_error("the engine is shutting down");
    queue_.push_back(&job);
    work_cv_.notify_one();
    done_cv_.wait(lock, [&] { return job.finished; });
    return job.result;
}

void Batcher::run() {
    std::vector<model::BatchItem> items;
    std::vector<Job*> picked;
    std::unique_lock lock(mu_);
    for (;;) {
        work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (stop_) break;
        // The sequences served by the last step usually come straight back with their next token
        // (after sampling on their own threads): wait a little for them, so one step serves them
        // all instead of the first one alone.
        if (queue_.size() < last_step_jobs_) {
            const auto wait = std::clamp<std::chrono::nanoseconds>(last_step_time_ / 4, std::chrono::microseconds(200),
                                                                   std::chrono::milliseconds(5));
            work_cv_.wait_for(lock, wait, [&] { return stop_ || queue_.size() >= last_step_jobs_; });
            if (stop_) break;
        }
        // Cancelled feeds leave before the step.
        bool any_finished = false;
        for (auto it = queue_.begin(); it != queue_.end();) {
            Job& j = **it;
            if (j.cancel != nullptr && j.cancel->load(std::memory_order_relaxed)) {
                finish(j, make_error("cancelled"));
                it = queue_.erase(it);
                any_finished = true;
            } else {
                ++it;
            }
        }
        if (any_finished) done_cv_.notify_all();
        if (queue_.empty()) continue;

        items.clear();
        picked.clear();
        size_t budget = opts_.max_batch_tokens;
        // Decodes first: one token each, they keep the running streams moving.
        for (Job* j : queue_) {
            if (budget == 0) break;
            if (j->tokens.size() - j->done == 1) {
                j->taking = 1;
                --budget;
                picked.push_back(j);
            }
        }
        // Then prompt chunks, starting at a rotating position so that no prompt waits forever.
        const size_t n = queue_.size();
        rotate_ = n ? rotate_ % n : 0;
        for (size_t k = 0; k < n && budget > 0; ++k) {
            Job* j = queue_[(rotate_ + k) % n];
            const size_t left = j->tokens.size() - j->done;
            if (left <= 1) continue;
            j->taking = std::min({left, opts_.prefill_chunk, budget});
            budget -= j->taking;
            picked.push_back(j);
        }
        ++rotate_;
        for (Job* j : picked) {
            const bool last = j->done + j->taking == j->tokens.size();
            items.push_back({j->seq, j->tokens.subspan(j->done, j->taking), last});
        }
        lock.unlock();
        const auto t0 = std::chrono::steady_clock::now();
        Status st = model_.forward_batch(items);
        const auto dt = std::chrono::steady_clock::now() - t0;
        lock.lock();
        last_step_time_ = std::chrono::duration_cast<std::chrono::nanoseconds>(dt);
        ++stats_.steps;
        if (picked.size() > 1) ++stats_.batched_steps;
        stats_.max_sequences_in_step = std::max(stats_.max_sequences_in_step, picked.size());
        size_t finished_now = 0;
        for (Job* j : picked) {
            if (!st) {
                finish(*j, st);
            } else {
                j->done += j->taking;
                stats_.tokens += j->taking;
                if (j->done == j->tokens.size()) finish(*j, {});
            }
            j->taking = 0;
            if (j->finished) ++finished_now;
        }
        last_step_jobs_ = finished_now;
        std::erase_if(queue_, [](const Job* j) { return j->finished; });
        done_cv_.notify_all();
    }
    for (Job* j : queue_) finish(*j, make_error("the engine is shutting down"));
    queue_.clear();
    done_cv_.notify_all();
}

}  // namespace realm::engine
