#include "engine/stop.hpp"

#include <algorithm>
#include <utility>

namespace realm::engine {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
    for (auto& s : stops) {
        if (!s.empty()) stops_.push_back(std::move(s));
    }
}

StopMatcher::Output StopMatcher::push(std::string_view chunk) {
    Output out;
    if (stopped_) {
        out.stopped = true;
        out.stop_index = stop_index_;
        return out;
    }
    if (stops_.empty()) {
        out.text.assign(chunk);
        return out;
    }
    held_.append(chunk);

    // A complete stop string: the earliest start wins, ties to the first listed.
    size_t best_pos = std::string::npos;
    size_t best_idx = 0;
    for (size_t i = 0; i < stops_.size(); ++i) {
        const size_t pos = held_.find(stops_[i]);
        if (pos < best_pos) {
            best_pos = pos;
            best_idx = i;
        }
    }
    if (best_pos != std::string::npos) {
        out.text = held_.substr(0, best_pos);
        out.stopped = true;
        out.stop_index = best_idx;
        held_.clear();
        stopped_ = true;
        stop_index_ = best_idx;
        return out;
    }

    // Hold back the longest suffix that is a proper prefix of some stop string.
    size_t hold = 0;
    for (const auto& s : stops_) {
        const size_t max_k = std::min(s.size() - 1, held_.size());
        for (size_t k = max_k; k > hold; --k) {
            if (std::string_view(held_).substr(held_.size() - k) == std::string_view(s).substr(0, k)) {
                hold = k;
                break;
            }
        }
    }
    out.text = held_.substr(0, held_.size() - hold);
    held_.erase(0, held_.size() - hold);
    return out;
}

std::string StopMatcher::flush() {
    std::string out = std::move(held_);
    held_.clear();
    return out;
}

const char* to_string(FinishReason r) {
    switch (r) {
        case FinishReason::Stop:
            return "stop";
        case FinishReason::Length:
            return "length";
    }
    return "stop";
}

Generation::Generation(const text::Tokenizer& tokenizer, const SamplingParams& params, bool special)
    : tok_(&tokenizer),
      max_tokens_(params.max_tokens),
      ignore_eos_(params.ignore_eos),
      special_(special),
      stop_(params.stop) {}

// Flushes the UTF-8 streamer through the stop matcher (an incomplete tail becomes U+FFFD, which
// may still complete a stop string), then releases whatever the matcher held back.
std::string Generation::release_all() {
    auto out = stop_.push(utf8_.flush());
    if (out.stopped) {
        finish_ = FinishReason::Stop;
        stop_index_ = out.stop_index;
        return std::move(out.text);
    }
    return out.text + stop_.flush();
}

Generation::Step Generation::push(int32_t token) {
    Step st;
    if (finish_) {
        st.finish = finish_;
        return st;
    }
    ++n_tokens_;
    if (!ignore_eos_ && tok_->is_eog(token)) {
        st.text = release_all();
        if (!finish_) finish_ = FinishReason::Stop;
    } else {
        auto out = stop_.push(utf8_.push(tok_->token_to_piece(token, special_)));
        st.text = std::move(out.text);
        if (out.stopped) {
            finish_ = FinishReason::Stop;
            stop_index_ = out.stop_index;
            utf8_.reset();
        } else if (max_tokens_ && n_tokens_ >= static_cast<size_t>(std::max(*max_tokens_, 0))) {
            st.text += release_all();
            if (!finish_) finish_ = FinishReason::Length;
        }
    }
    text_ += st.text;
    st.finish = finish_;
    return st;
}

std::string Generation::finish(FinishReason reason) {
    if (finish_) return {};
    std::string text = release_all();
    if (!finish_) finish_ = reason;
    text_ += text;
    return text;
}

}  // namespace realm::engine
