#include "cli/generate.hpp"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/loaded_model.hpp"
#include "engine/stop.hpp"
#include "gguf/reader.hpp"

namespace realm::cli {
namespace {

using Clock = std::chrono::steady_clock;

using Loaded = engine::LoadedModel;

Result<std::unique_ptr<Loaded>> load(const GenerateOptions& o) {
    return engine::LoadedModel::open(o.model, engine::LoadOptions{o.n_threads, o.chat_template, o.weights});
}

struct Stats {
    size_t prompt_tokens = 0, gen_tokens = 0;
    double prompt_s = 0, gen_s = 0;
};

// Feeds `prompt` into `seq` and generates until a finish condition, streaming text to stdout.
Result<Stats> generate(const Loaded& l, model::Sequence& seq, std::span<const int32_t> prompt,
                       const engine::SamplingParams& params, std::string* transcript) {
    auto sampler = engine::Sampler::create(params, l.model().hparams().n_vocab, l.tokenizer().eog_ids());
    if (!sampler) return sampler.error();
    for (int32_t t : prompt) sampler->accept(t);
    engine::Generation gen(l.tokenizer(), params);
    Stats st;
    st.prompt_tokens = prompt.size();

    auto t0 = Clock::now();
    auto logits = l.model().forward(seq, prompt);
    if (!logits) return logits.error();
    auto t1 = Clock::now();
    st.prompt_s = std::chrono::duration<double>(t1 - t0).count();

    while (true) {
        auto tok = sampler->sample(*logits);
        if (!tok) return tok.error();
        sampler->accept(*tok);
        auto step = gen.push(*tok);
        std::fwrite(step.text.data(), 1, step.text.size(), stdout);
        std::fflush(stdout);
        if (transcript) *transcript += step.text;
        if (step.finish) break;
        if (seq.n_past() >= seq.n_ctx()) {
            const std::string rest = gen.finish(engine::FinishReason::Length);
            std::fwrite(rest.data(), 1, rest.size(), stdout);
            if (transcript) *transcript += rest;
            break;
        }
        logits = l.model().forward(seq, std::span(&*tok, 1));
        if (!logits) return logits.error();
    }
    st.gen_tokens = gen.tokens();
    st.gen_s = std::chrono::duration<double>(Clock::now() - t1).count();
    return st;
}

void print_stats(const Stats& s) {
    std::fprintf(stderr, "\n\nprompt: %zu tokens in %.3f s (%.1f tok/s); generation: %zu tokens in %.3f s (%.1f tok/s)\n",
                 s.prompt_tokens, s.prompt_s, s.prompt_s > 0 ? s.prompt_tokens / s.prompt_s : 0.0, s.gen_tokens,
                 s.gen_s, s.gen_s > 0 ? s.gen_tokens / s.gen_s : 0.0);
}

int fail(const char* cmd, const Error& e) {
    std::fprintf(stderr, "realm %s: %s\n", cmd, e.message.c_str());
    return 1;
}

}  // namespace

int run(GenerateOptions o) {
    auto l = load(o);
    if (!l) return fail("run", l.error());
    if (auto s = o.sampling.validate((*l)->model().hparams().n_vocab); !s) return fail("run", s.error());

    std::string prompt = o.prompt;
    if (o.chat) {
        nlohmann::json messages = nlohmann::json::array();
        if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
        messages.push_back({{"role", "user"}, {"content", o.prompt}});
        auto rendered = (*l)->render_chat(messages, /*add_generation_prompt=*/true);
        if (!rendered) return fail("run", rendered.error());
        prompt = std::move(*rendered);
    }
    const auto tokens = (*l)->tokenizer().encode(prompt, /*add_special=*/true, /*parse_special=*/o.chat);
    if (tokens.empty()) return fail("run", make_error("the prompt is empty"));
    if (o.verbose_prompt) {
        std::fprintf(stderr, "prompt (%zu tokens): %s\n", tokens.size(), prompt.c_str());
    }
    auto seq = (*l)->model().new_sequence(o.n_ctx);
    if (!seq) return fail("run", seq.error());
    if (tokens.size() >= seq->n_ctx()) {
        return fail("run", make_error("the prompt has " + std::to_string(tokens.size()) +
                                      " tokens; the context holds " + std::to_string(seq->n_ctx())));
    }
    auto st = generate(**l, *seq, tokens, o.sampling, nullptr);
    if (!st) return fail("run", st.error());
    print_stats(*st);
    return 0;
}

int chat(GenerateOptions o) {
    auto l = load(o);
    if (!l) return fail("chat", l.error());
    if (auto s = o.sampling.validate((*l)->model().hparams().n_vocab); !s) return fail("chat", s.error());
    if (auto tpl = (*l)->chat_template(); !tpl) return fail("chat", tpl.error());
    auto seq = (*l)->model().new_sequence(o.n_ctx);
    if (!seq) return fail("chat", seq.error());

    nlohmann::json messages = nlohmann::json::array();
    if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
    std::fprintf(stderr, "realm chat: type a message and press Enter; an empty line or end of input quits.\n");
    std::string line;
    while (true) {
        std::fprintf(stderr, "> ");
        if (!std::getline(std::cin, line) || line.empty()) break;
        messages.push_back({{"role", "user"}, {"content", line}});
        auto rendered = (*l)->render_chat(messages, /*add_generation_prompt=*/true);
        if (!rendered) return fail("chat", rendered.error());
        const auto tokens = (*l)->tokenizer().encode(*rendered, true, true);
        // The whole conversation is fed again each turn: simple, and cheap for small models.
        seq->clear();
        if (tokens.size() >= seq->n_ctx()) return fail("chat", make_error("the conversation no longer fits the context"));
        std::string reply;
        auto st = generate(**l, *seq, tokens, o.sampling, &reply);
        if (!st) return fail("chat", st.error());
        std::fprintf(stdout, "\n");
        messages.push_back({{"role", "assistant"}, {"content", reply}});
    }
    return 0;
}

int tokenize(const TokenizeOptions& o) {
    auto f = gguf::File::open(o.model);
    if (!f) return fail("tokenize", f.error());
    auto tok = text::Tokenizer::from_metadata(f->metadata());
    if (!tok) return fail("tokenize", tok.error());
    const auto ids = tok->encode(o.text, !o.no_bos, o.parse_special);
    if (o.pieces) {
        for (int32_t id : ids) {
            nlohmann::json piece = tok->token_to_piece(id);
            std::printf("%6d %s\n", id, piece.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        }
    } else {
        std::printf("%s\n", nlohmann::json(ids).dump().c_str());
    }
    return 0;
}

}  // namespace realm::cli
