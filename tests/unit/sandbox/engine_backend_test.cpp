// EngineBackend: the sandbox's Backend over real models (stories260K: small and fast), and the default guest
// (guest/default) running on it through the sandbox.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <limits>
#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "engine/loaded_model.hpp"
#include "engine/sampling.hpp"
#include "engine/stop.hpp"
#include "sandbox/engine_backend.hpp"
#include "sandbox/sandbox.hpp"

namespace fs = std::filesystem;
using namespace realm;
using namespace realm::sandbox;

namespace {

// The model file named by env var `var` (else `fallback`); nullopt (skip) when neither exists. A set
// variable that points nowhere is a test failure.
std::optional<std::string> model_path(const char* var, const std::string& fallback = "") {
    const char* v = std::getenv(var);
    if (v && *v) {
        if (!fs::is_regular_file(v)) {
            ADD_FAILURE() << var << "=" << v << " does not name a file";
            return std::nullopt;
        }
        return std::string(v);
    }
    if (!fallback.empty() && fs::is_regular_file(fallback)) return fallback;
    return std::nullopt;
}

std::optional<std::string> stories_path() {
    const char* shared = std::getenv("REALM_SHARED_DIR");
    return model_path("REALM_STORIES", shared ? std::string(shared) + "/models/stories260K.gguf" : "");
}

#define REQUIRE_STORIES(path)                                                                      \
    auto path##_opt = stories_path();                                                              \
    if (!path##_opt) GTEST_SKIP() << "REALM_STORIES not set and no stories260K.gguf under REALM_SHARED_DIR"; \
    const std::string path = *path##_opt

std::shared_ptr<const engine::LoadedModel> load(const std::string& path) {
    auto lm = engine::LoadedModel::open(path, engine::LoadOptions{2, "", model::Weights::Rows16});
    if (!lm) {
        ADD_FAILURE() << lm.error().message;
        return nullptr;
    }
    return std::shared_ptr<const engine::LoadedModel>(std::move(*lm));
}

SamplingParams greedy() {
    SamplingParams p;
    p.temperature = 0.f;
    return p;
}

// Generates with the engine directly, as `realm run` does: the reference for the backend and the guest.
struct Direct {
    std::vector<int32_t> tokens;
    std::string text;
    std::string finish;
};
Direct generate_direct(const engine::LoadedModel& lm, std::span<const int32_t> prompt, const engine::SamplingParams& p) {
    Direct d;
    auto seq = lm.model().new_sequence(0);
    EXPECT_TRUE(seq.ok());
    auto sampler = engine::Sampler::create(p, lm.model().hparams().n_vocab, lm.tokenizer().eog_ids());
    EXPECT_TRUE(sampler.ok());
    for (int32_t t : prompt) sampler->accept(t);
    engine::Generation gen(lm.tokenizer(), p);
    auto logits = lm.model().forward(*seq, prompt);
    EXPECT_TRUE(logits.ok());
    while (true) {
        auto tok = sampler->sample(*logits);
        EXPECT_TRUE(tok.ok());
        sampler->accept(*tok);
        d.tokens.push_back(*tok);
        auto step = gen.push(*tok);
        d.text += step.text;
        if (step.finish) break;
        if (seq->n_past() >= seq->n_ctx()) {
            d.text += gen.finish(engine::FinishReason::Length);
            break;
        }
        logits = lm.model().forward(*seq, std::span(&*tok, 1));
        EXPECT_TRUE(logits.ok());
    }
    d.finish = engine::to_string(*gen.finish_reason());
    return d;
}

}  // namespace

TEST(EngineBackend, RegistryAndAllowLists) {
    REQUIRE_STORIES(path);
    EngineBackend be;
    auto lm = load(path);
    ASSERT_TRUE(lm);
    ASSERT_TRUE(be.add_model("stories", lm).ok());
    EXPECT_FALSE(be.add_model("stories", lm).ok()) << "duplicate names are refused";
    EXPECT_FALSE(be.add_model("", lm).ok());
    EXPECT_FALSE(be.add_model("missing", "/nonexistent/model.gguf").ok());
    be.allow("acme", {"stories"});
    EXPECT_EQ(be.allowed_models("acme"), std::vector<std::string>{"stories"});
    EXPECT_TRUE(be.allowed_models("other").empty());
    EXPECT_FALSE(be.find_model("nope").ok());
    auto m = be.find_model("stories");
    ASSERT_TRUE(m.ok());
    const ModelInfo& info = (*m)->info();
    EXPECT_EQ(info.name, "stories");
    EXPECT_EQ(info.n_vocab, static_cast<int32_t>(lm->model().hparams().n_vocab));
    EXPECT_EQ(info.n_ctx, static_cast<int32_t>(std::min<uint32_t>(lm->model().hparams().n_ctx_train, 4096)));
    EXPECT_EQ(info.bos_token, lm->tokenizer().bos().value_or(-1));
}

TEST(EngineBackend, TokenizeDetokenizeAndPieces) {
    REQUIRE_STORIES(path);
    EngineBackend be;
    auto lm = load(path);
    ASSERT_TRUE(be.add_model("s", lm).ok());
    auto m = *be.find_model("s");
    auto toks = m->tokenize("Once upon a time", true, false);
    ASSERT_TRUE(toks.ok());
    EXPECT_EQ(*toks, lm->tokenizer().encode("Once upon a time", true, false));
    auto text = m->detokenize(*toks, false);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, lm->tokenizer().decode(*toks, false));
    // A piece keeps its leading space (detokenize of a one-token list would drop it).
    const std::vector<int32_t> upon = lm->tokenizer().encode(" upon", false, false);
    ASSERT_FALSE(upon.empty());
    auto piece = m->token_piece(upon.back());
    ASSERT_TRUE(piece.ok());
    EXPECT_EQ(*piece, lm->tokenizer().token_to_piece(upon.back(), false));
    EXPECT_FALSE(m->token_piece(-1).ok());
    EXPECT_FALSE(m->token_piece(1 << 30).ok());
    // Chat templates: malformed messages are errors, not exceptions.
    EXPECT_FALSE(m->apply_chat_template("not json", true).ok());
    EXPECT_FALSE(m->apply_chat_template("[{\"role\": 1}]", true).ok());
}

TEST(EngineBackend, FeedAndGreedyStepMatchTheModel) {
    REQUIRE_STORIES(path);
    EngineBackend be;
    auto lm = load(path);
    ASSERT_TRUE(be.add_model("s", lm).ok());
    auto m = *be.find_model("s");
    const auto prompt = lm->tokenizer().encode("Once upon a time", true, false);

    // Directly: forward + argmax.
    auto dseq = lm->model().new_sequence(0);
    ASSERT_TRUE(dseq.ok());
    auto dlog = lm->model().forward(*dseq, prompt);
    ASSERT_TRUE(dlog.ok());
    std::vector<float> first(dlog->begin(), dlog->end());
    std::vector<int32_t> direct;
    for (int i = 0; i < 40; ++i) {
        const int32_t t = model::argmax(*dlog);
        direct.push_back(t);
        dlog = lm->model().forward(*dseq, std::span(&t, 1));
        ASSERT_TRUE(dlog.ok());
    }

    // Through the backend.
    auto seq = m->open_sequence(nullptr);
    ASSERT_TRUE(seq.ok());
    Sequence& s = **seq;
    EXPECT_FALSE(s.logits().ok()) << "no logits before the first feed";
    EXPECT_FALSE(s.sample(greedy()).ok());
    ASSERT_TRUE(s.feed(prompt).ok());
    EXPECT_EQ(s.length(), prompt.size());
    auto logits = s.logits();
    ASSERT_TRUE(logits.ok());
    ASSERT_EQ(logits->size(), first.size());
    EXPECT_TRUE(std::equal(first.begin(), first.end(), logits->begin())) << "same logits, bit for bit";
    std::vector<int32_t> via;
    for (int i = 0; i < 40; ++i) {
        auto t = s.sample(greedy());
        ASSERT_TRUE(t.ok()) << t.error().message;
        via.push_back(*t);
        const int32_t tok = *t;
        ASSERT_TRUE(s.feed(std::span(&tok, 1)).ok());
    }
    EXPECT_EQ(via, direct);
    EXPECT_EQ(s.length(), prompt.size() + 40);

    // Bad feeds are errors and leave the sequence usable.
    const std::vector<int32_t> bad{-1};
    EXPECT_FALSE(s.feed(bad).ok());
    const std::vector<int32_t> too_big(static_cast<size_t>(m->info().n_ctx), 1);
    EXPECT_FALSE(s.feed(too_big).ok());
    EXPECT_EQ(s.length(), prompt.size() + 40);
}

TEST(EngineBackend, SeededSamplingMatchesTheEngineSampler) {
    REQUIRE_STORIES(path);
    EngineBackend be;
    auto lm = load(path);
    ASSERT_TRUE(be.add_model("s", lm).ok());
    auto m = *be.find_model("s");
    const auto prompt = lm->tokenizer().encode("Once upon a time", true, false);

    SamplingParams p;
    p.temperature = 0.9f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.1f;
    p.repeat_last_n = 64;
    p.seed = 1234;
    engine::SamplingParams ep = to_engine_params(p);
    ep.max_tokens = 60;
    ep.ignore_eos = false;
    const Direct d = generate_direct(*lm, prompt, ep);

    auto seq = m->open_sequence(nullptr);
    ASSERT_TRUE(seq.ok());
    ASSERT_TRUE((*seq)->feed(prompt).ok());
    std::vector<int32_t> via;
    for (size_t i = 0; i < d.tokens.size(); ++i) {
        auto t = (*seq)->sample(p);
        ASSERT_TRUE(t.ok());
        via.push_back(*t);
        if (m->is_end_of_generation(*t)) break;
        const int32_t tok = *t;
        ASSERT_TRUE((*seq)->feed(std::span(&tok, 1)).ok());
    }
    EXPECT_EQ(via, d.tokens);

    // Invalid parameters are errors.
    SamplingParams bad = p;
    bad.top_p = 0.f;
    EXPECT_FALSE((*seq)->sample(bad).ok());
}

// Generates through the backend's sequence with `p` for as many tokens as the reference has.
std::vector<int32_t> generate_via(Model& m, std::span<const int32_t> prompt, const SamplingParams& p, size_t n) {
    std::vector<int32_t> via;
    auto seq = m.open_sequence(nullptr);
    EXPECT_TRUE(seq.ok());
    if (!seq.ok()) return via;
    EXPECT_TRUE((*seq)->feed(prompt).ok());
    for (size_t i = 0; i < n; ++i) {
        auto t = (*seq)->sample(p);
        EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
        if (!t.ok()) break;
        via.push_back(*t);
        if (m.is_end_of_generation(*t)) break;
        const int32_t tok = *t;
        EXPECT_TRUE((*seq)->feed(std::span(&tok, 1)).ok());
    }
    return via;
}

TEST(EngineBackend, PenaltiesTypicalAndLogitBiasMatchTheEngineSampler) {
    REQUIRE_STORIES(path);
    EngineBackend be;
    auto lm = load(path);
    ASSERT_TRUE(be.add_model("s", lm).ok());
    auto m = *be.find_model("s");
    const auto prompt = lm->tokenizer().encode("Once upon a time", true, false);

    // Greedy reference, then the same with frequency/presence penalties: the text changes, and the backend
    // follows the engine's sampler exactly.
    SamplingParams g = greedy();
    g.seed = 1;
    engine::SamplingParams eg = to_engine_params(g);
    eg.max_tokens = 60;
    const Direct plain = generate_direct(*lm, prompt, eg);

    SamplingParams pen = g;
    pen.frequency_penalty = 0.8f;
    pen.presence_penalty = 0.6f;
    engine::SamplingParams epen = to_engine_params(pen);
    EXPECT_EQ(epen.frequency_penalty, 0.8f);
    EXPECT_EQ(epen.presence_penalty, 0.6f);
    epen.max_tokens = 60;
    const Direct penalised = generate_direct(*lm, prompt, epen);
    EXPECT_NE(penalised.tokens, plain.tokens) << "the penalties should change greedy output";
    EXPECT_EQ(generate_via(*m, prompt, pen, penalised.tokens.size()), penalised.tokens);

    // Banning the first greedy token (-inf): it never appears, and the rest follows the engine.
    SamplingParams ban = g;
    const int32_t banned = plain.tokens.front();
    ban.logit_bias[banned] = -std::numeric_limits<float>::infinity();
    const int32_t boost = *std::find_if(plain.tokens.begin(), plain.tokens.end(), [&](int32_t t) { return t != banned; });
    ban.logit_bias[boost] = 1.5f;
    engine::SamplingParams eban = to_engine_params(ban);
    ASSERT_EQ(eban.logit_bias.size(), 2u);
    eban.max_tokens = 60;
    const Direct banned_run = generate_direct(*lm, prompt, eban);
    EXPECT_NE(banned_run.tokens.front(), banned);
    EXPECT_EQ(std::count(banned_run.tokens.begin(), banned_run.tokens.end(), banned), 0);
    const auto via_ban = generate_via(*m, prompt, ban, banned_run.tokens.size());
    EXPECT_EQ(via_ban, banned_run.tokens);

    // Seeded sampling with typical-p, penalties and a bias.
    SamplingParams all;
    all.temperature = 0.9f;
    all.top_k = 0;
    all.top_p = 1.f;
    all.min_p = 0.f;
    all.typical_p = 0.9f;
    all.frequency_penalty = 0.3f;
    all.presence_penalty = -0.2f;
    all.logit_bias[banned] = -std::numeric_limits<float>::infinity();
    all.seed = 77;
    engine::SamplingParams eall = to_engine_params(all);
    EXPECT_EQ(eall.typical_p, 0.9f);
    eall.max_tokens = 60;
    const Direct d = generate_direct(*lm, prompt, eall);
    EXPECT_EQ(generate_via(*m, prompt, all, d.tokens.size()), d.tokens);
    EXPECT_EQ(std::count(d.tokens.begin(), d.tokens.end(), banned), 0);

    // Changing only the bias mid-sequence makes a new sampler (parameters compared in full).
    auto seq = m->open_sequence(nullptr);
    ASSERT_TRUE(seq.ok());
    ASSERT_TRUE((*seq)->feed(prompt).ok());
    auto t0 = (*seq)->sample(g);
    ASSERT_TRUE(t0.ok());
    EXPECT_EQ(*t0, banned);
    auto t1 = (*seq)->sample(ban);
    ASSERT_TRUE(t1.ok());
    EXPECT_NE(*t1, banned);
}

// ---- the default guest, through the sandbox ------------------------------------------------------------

namespace {

struct GuestRun {
    Outcome out;
    std::string streamed;
    nlohmann::json response;
};

GuestRun run_default_guest(const std::shared_ptr<EngineBackend>& be, const std::string& body) {
    static std::unique_ptr<Sandbox> sb;
    static std::shared_ptr<const GuestModule> mod;
    static std::shared_ptr<EngineBackend> bound;
    if (bound != be) {
        EngineConfig c;
        c.max_instances = 4;
        auto r = Sandbox::create(c, be);
        EXPECT_TRUE(r.ok());
        sb = std::move(*r);
        auto m = sb->load_file(fs::path(REALM_GUEST_DIR) / "default.wasm");
        EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
        mod = *m;
        bound = be;
    }
    GuestRun g;
    Request req;
    req.tenant = "t";
    req.request_id = "r";
    req.body_json = body;
    req.allowed_models = be->allowed_models("t");
    req.limits.time_budget = std::chrono::milliseconds(60000);
    req.on_chunk = [&](std::string_view c) { g.streamed += c; };
    g.out = sb->run(*mod, req);
    if (g.out.ok()) g.response = nlohmann::json::parse(g.out.response, nullptr, false);
    return g;
}

}  // namespace

TEST(DefaultGuest, CompletionMatchesTheEngineAndStreams) {
    REQUIRE_STORIES(path);
    auto be = std::make_shared<EngineBackend>();
    auto lm = load(path);
    ASSERT_TRUE(be->add_model("stories", lm).ok());
    be->allow("t", {"stories"});

    const auto prompt = lm->tokenizer().encode("Once upon a time", true, false);
    engine::SamplingParams ep;
    ep.temperature = 0;
    ep.max_tokens = 50;
    ep.seed = 3;
    const Direct d = generate_direct(*lm, prompt, ep);

    auto g = run_default_guest(be, R"({"model":"stories","prompt":"Once upon a time","temperature":0,"max_tokens":50,"seed":3,"stream":true})");
    ASSERT_TRUE(g.out.ok()) << g.out.message;
    ASSERT_TRUE(g.response.is_object()) << g.out.response;
    EXPECT_EQ(g.response["choices"][0]["text"], d.text);
    EXPECT_EQ(g.response["choices"][0]["finish_reason"], d.finish);
    EXPECT_EQ(g.streamed, d.text);
    EXPECT_EQ(g.response["usage"]["prompt_tokens"], prompt.size());
    EXPECT_EQ(g.response["usage"]["completion_tokens"], d.tokens.size());

    // Sampled, with a stop string that occurs in the text, and without streaming.
    engine::SamplingParams sp;
    sp.temperature = 0.8f;
    sp.top_k = 40;
    sp.seed = 99;
    sp.max_tokens = 80;
    const Direct free_run = generate_direct(*lm, prompt, sp);
    ASSERT_GT(free_run.text.size(), 12u);
    const std::string stop = free_run.text.substr(free_run.text.size() / 2, 3);
    sp.stop = {stop};
    const Direct stopped = generate_direct(*lm, prompt, sp);
    nlohmann::json body = {{"model", "stories"}, {"prompt", "Once upon a time"}, {"temperature", 0.8}, {"top_k", 40},
                           {"seed", 99}, {"max_tokens", 80}, {"stop", {stop}}};
    g = run_default_guest(be, body.dump());
    ASSERT_TRUE(g.out.ok()) << g.out.message;
    EXPECT_EQ(g.response["choices"][0]["text"], stopped.text) << "stop string " << stop;
    EXPECT_EQ(g.response["choices"][0]["finish_reason"], "stop");
    EXPECT_EQ(g.streamed, "");
}

TEST(DefaultGuest, PenaltiesTypicalAndLogitBiasMatchTheEngine) {
    REQUIRE_STORIES(path);
    auto be = std::make_shared<EngineBackend>();
    auto lm = load(path);
    ASSERT_TRUE(be->add_model("stories", lm).ok());
    be->allow("t", {"stories"});
    const auto prompt = lm->tokenizer().encode("Once upon a time", true, false);

    engine::SamplingParams ep;
    ep.temperature = 0;
    ep.max_tokens = 40;
    ep.seed = 3;
    const Direct plain = generate_direct(*lm, prompt, ep);
    const int32_t banned = plain.tokens.front();

    ep.temperature = 0.7f;
    ep.frequency_penalty = 0.5f;
    ep.presence_penalty = 0.25f;
    ep.typical_p = 0.95f;
    ep.logit_bias[banned] = -std::numeric_limits<float>::infinity();  // -100 in the request
    const int32_t boost = *std::find_if(plain.tokens.begin(), plain.tokens.end(), [&](int32_t t) { return t != banned; });
    ep.logit_bias[boost] = 2.5f;
    const Direct d = generate_direct(*lm, prompt, ep);
    EXPECT_EQ(std::count(d.tokens.begin(), d.tokens.end(), banned), 0);

    nlohmann::json body = {{"model", "stories"}, {"prompt", "Once upon a time"}, {"temperature", 0.7},
                           {"max_tokens", 40}, {"seed", 3}, {"frequency_penalty", 0.5}, {"presence_penalty", 0.25},
                           {"typical_p", 0.95},
                           {"logit_bias", {{std::to_string(banned), -100}, {std::to_string(boost), 2.5}}}};
    auto g = run_default_guest(be, body.dump());
    ASSERT_TRUE(g.out.ok()) << g.out.message;
    ASSERT_FALSE(g.response.contains("error")) << g.out.response;
    EXPECT_EQ(g.response["choices"][0]["text"], d.text);
    EXPECT_EQ(g.response["usage"]["completion_tokens"], d.tokens.size());
}

TEST(DefaultGuest, BadRequestsGetErrorResponsesNotTraps) {
    REQUIRE_STORIES(path);
    auto be = std::make_shared<EngineBackend>();
    ASSERT_TRUE(be->add_model("stories", path, EngineModelOptions{2, 0, "", model::Weights::Rows16}).ok());
    be->allow("t", {"stories"});
    const std::string deep = std::string(10000, '[') + std::string(10000, ']');
    std::string too_many_bias = "{\"model\":\"stories\",\"prompt\":\"x\",\"logit_bias\":{";
    for (int i = 0; i < 1025; ++i) too_many_bias += (i ? ",\"" : "\"") + std::to_string(i) + "\":1";
    too_many_bias += "}}";
    const std::vector<std::string> bodies = {
        "",
        "{",
        "[1,2]",
        "null",
        "{\"model\":\"stories\",\"prompt\":\"x\"} trailing",
        "{\"model\":\"stories\",\"prompt\":\"\\ud800\",\"max_tokens\":1,\"temperature\":0}x",
        "{\"model\":\"stories\",\"messages\":" + deep + "}",
        "{\"model\":\"stories\"}",
        "{\"prompt\":\"x\"}",
        "{\"model\":\"secret\",\"prompt\":\"x\"}",
        "{\"model\":\"stories\",\"prompt\":7}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"temperature\":\"hot\"}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"top_p\":7}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"temperature\":-1}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"temperature\":1e999}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"max_tokens\":0}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"seed\":-1}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"stop\":[1]}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"stop\":\"\"}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"frequency_penalty\":1e999}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"typical_p\":0}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"typical_p\":1.5}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"logit_bias\":[5]}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"logit_bias\":{\"5\":-101}}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"logit_bias\":{\"5\":\"ban\"}}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"logit_bias\":{\"hello\":1}}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"logit_bias\":{\"-5\":1}}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"logit_bias\":{\"99999999\":1}}",
        too_many_bias,
        "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",  // no chat template
        "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\"}]}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"stream\":1}",
        "{\"model\":\"stories\",\"prompt\":\"\\x\"}",
        "{\"model\":\"stories\",\"prompt\":\"x\",\"n\":2}",
    };
    for (const auto& body : bodies) {
        auto g = run_default_guest(be, body);
        ASSERT_TRUE(g.out.ok()) << body.substr(0, 80) << ": " << to_string(g.out.error) << " " << g.out.message;
        ASSERT_TRUE(g.response.is_object()) << g.out.response;
        EXPECT_TRUE(g.response.contains("error")) << body.substr(0, 80) << " -> " << g.out.response;
    }
    // Escapes decode (a lone surrogate becomes U+FFFD) and the request still runs.
    auto g = run_default_guest(be, R"({"model":"stories","prompt":"\u00e9\ud83d\ude00\ud800 \"x\"","max_tokens":2,"temperature":0})");
    ASSERT_TRUE(g.out.ok()) << g.out.message;
    EXPECT_FALSE(g.response.contains("error")) << g.out.response;
    EXPECT_EQ(g.response["usage"]["completion_tokens"], 2);
}

TEST(DefaultGuest, ConcurrentRequestsOnOneModelAgree) {
    REQUIRE_STORIES(path);
    auto be = std::make_shared<EngineBackend>();
    ASSERT_TRUE(be->add_model("stories", path, EngineModelOptions{2, 256, "", model::Weights::Rows16}).ok());
    be->allow("t", {"stories"});
    const std::string body = R"({"model":"stories","prompt":"Once upon a time","temperature":0.7,"seed":11,"max_tokens":40})";
    const GuestRun ref = run_default_guest(be, body);
    ASSERT_TRUE(ref.out.ok()) << ref.out.message;
    ASSERT_FALSE(ref.response.contains("error")) << ref.out.response;
    EXPECT_EQ(ref.response["usage"]["prompt_tokens"].get<int>() + ref.response["usage"]["completion_tokens"].get<int>(),
              ref.response["usage"]["total_tokens"].get<int>());
    std::vector<std::thread> threads;
    std::vector<GuestRun> runs(4);
    for (size_t i = 0; i < runs.size(); ++i) threads.emplace_back([&, i] { runs[i] = run_default_guest(be, body); });
    for (auto& t : threads) t.join();
    for (const auto& g : runs) {
        ASSERT_TRUE(g.out.ok()) << g.out.message;
        EXPECT_EQ(g.response, ref.response);
    }
}
