// Sandbox tests: ABI v1 end to end, hostile guests, limits, module cache, instantiation cost.
// Every hostile case is followed by a well-behaved request on the same engine, which must still succeed.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <thread>
#include <unistd.h>

#include "../../../guest/include/realm_guest.h"
#include "sandbox/sandbox.hpp"
#include "test_backend.hpp"

namespace fs = std::filesystem;
using namespace realm::sandbox;
using realm::sandbox::testing::g_live_sequences;
using realm::sandbox::testing::TinyBackend;

namespace {

EngineConfig test_config() {
    EngineConfig c;
    c.max_instances = 32;
    c.max_memory_bytes = 128ull << 20;
    return c;
}

// One engine for the whole process, like the server.
Sandbox& sandbox() {
    static std::unique_ptr<Sandbox> sb = [] {
        auto r = Sandbox::create(test_config(), std::make_shared<TinyBackend>());
        if (!r) {
            std::fprintf(stderr, "Sandbox::create failed: %s\n", r.error().message.c_str());
            std::abort();
        }
        return std::move(*r);
    }();
    return *sb;
}

fs::path wat(const std::string& name) { return fs::path(REALM_TEST_WAT_DIR) / (name + ".wat"); }
fs::path test_guest(const std::string& name) { return fs::path(REALM_TEST_GUEST_DIR) / (name + ".wasm"); }
fs::path sdk_guest(const std::string& name) { return fs::path(REALM_GUEST_DIR) / (name + ".wasm"); }

std::shared_ptr<const GuestModule> must_load(const fs::path& p, Sandbox& sb = sandbox()) {
    auto m = sb.load_file(p);
    EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
    if (!m) throw std::runtime_error("load failed: " + p.string());
    return *m;
}

Request make_request(std::string body = R"({"hello":"world"})") {
    Request r;
    r.tenant = "acme";
    r.request_id = "req-1";
    r.body_json = std::move(body);
    r.allowed_models = {"tiny"};
    r.limits.time_budget = std::chrono::milliseconds(2000);
    r.on_log = [](LogLevel, std::string_view) {};
    return r;
}

// The "next request still works" check used after every hostile case.
void expect_echo_works(Sandbox& sb = sandbox()) {
    auto echo = must_load(sdk_guest("echo"), sb);
    Request req = make_request(R"({"after":"hostile"})");
    std::string streamed;
    req.on_chunk = [&](std::string_view c) { streamed += c; };
    Outcome o = sb.run(*echo, req);
    ASSERT_TRUE(o.ok()) << to_string(o.error) << ": " << o.message;
    EXPECT_EQ(streamed, req.body_json);
    EXPECT_EQ(g_live_sequences.load(), 0);
}

}  // namespace

TEST(Sandbox, EchoRoundTrip) {
    auto echo = must_load(sdk_guest("echo"));
    Request req = make_request(R"({"messages":[{"role":"user","content":"hello there, sandbox"}]})");
    std::string streamed;
    int chunks = 0;
    std::vector<std::string> logs;
    req.on_chunk = [&](std::string_view c) {
        streamed += c;
        ++chunks;
    };
    req.on_log = [&](LogLevel, std::string_view l) { logs.emplace_back(l); };
    Outcome o = sandbox().run(*echo, req);
    ASSERT_TRUE(o.ok()) << to_string(o.error) << ": " << o.message;
    const auto j = nlohmann::json::parse(o.response);
    EXPECT_EQ(j["echo"], nlohmann::json::parse(req.body_json));
    EXPECT_EQ(j["bytes"], req.body_json.size());
    EXPECT_EQ(j["chunks"], chunks);
    EXPECT_EQ(streamed, req.body_json);
    ASSERT_EQ(logs.size(), 1u);
    EXPECT_EQ(logs[0], "echo: handling request");
    EXPECT_EQ(o.stats.emits, static_cast<uint32_t>(chunks));
    EXPECT_GT(o.stats.instantiate_us, 0);
}

TEST(Sandbox, GenerateUsesEveryModelImport) {
    auto gen = must_load(test_guest("sandbox_generate"));
    Request req = make_request();
    std::string streamed;
    req.on_chunk = [&](std::string_view c) { streamed += c; };
    req.on_log = [](LogLevel, std::string_view l) { ADD_FAILURE() << "guest logged an error: " << l; };
    Outcome o = sandbox().run(*gen, req);
    ASSERT_TRUE(o.ok()) << to_string(o.error) << ": " << o.message;
    const auto j = nlohmann::json::parse(o.response);
    // Prompt "<s>" + "<|user|>ab\n<|assistant|>" = 1 + 24 tokens; the tiny model then says 'a' + len % 26
    // ("zabcdef") until the sequence holds 32 tokens, then EOS (not fed).
    EXPECT_EQ(j["prompt_tokens"], 25);
    EXPECT_EQ(j["n_vocab"], 258);
    EXPECT_EQ(j["top1"], 'z');
    EXPECT_EQ(j["sampled"], 'z');
    EXPECT_EQ(j["tokens"], 7);
    EXPECT_EQ(j["text"], "zabcdef");
    EXPECT_EQ(j["seq_len"], 32);
    EXPECT_EQ(j["remaining_ok"], true);  // the 2000 ms budget of make_request()
    EXPECT_EQ(j["info"]["name"], "tiny");
    EXPECT_EQ(j["info"]["eos_token"], 257);
    EXPECT_EQ(streamed, "zabcdef");
    EXPECT_EQ(g_live_sequences.load(), 0);
}

TEST(Sandbox, CxxChatExample) {
    auto chat = must_load(sdk_guest("chat_cpp"));
    Request req = make_request(R"({"messages":[{"role":"user","content":"ab"}],"max_tokens":3})");
    std::string streamed;
    req.on_chunk = [&](std::string_view c) { streamed += c; };
    Outcome o = sandbox().run(*chat, req);
    ASSERT_TRUE(o.ok()) << to_string(o.error) << ": " << o.message;
    auto j = nlohmann::json::parse(o.response);
    EXPECT_EQ(j["text"], "zab");
    EXPECT_EQ(j["finish_reason"], "length");
    EXPECT_EQ(streamed, "zab");
    req.body_json = R"({"messages":[{"role":"user","content":"ab"}],"max_tokens":100})";
    o = sandbox().run(*chat, req);
    ASSERT_TRUE(o.ok()) << to_string(o.error) << ": " << o.message;
    j = nlohmann::json::parse(o.response);
    EXPECT_EQ(j["text"], "zabcdef");
    EXPECT_EQ(j["finish_reason"], "stop");
    EXPECT_EQ(g_live_sequences.load(), 0);
}

TEST(Sandbox, WasiGuestGetsAnEmptyWasiContext) {
    auto g = must_load(test_guest("sandbox_wasi_user"));
    Outcome o = sandbox().run(*g, make_request("[1,2,3]"));
    ASSERT_TRUE(o.ok()) << to_string(o.error) << ": " << o.message;
    const auto j = nlohmann::json::parse(o.response);
    EXPECT_EQ(j["len"], 7);
    EXPECT_EQ(j["file_opened"], false);
    expect_echo_works();
}

struct HostileCase {
    const char* file;
    ErrorKind kind;
    const char* message_part;
};

void PrintTo(const HostileCase& c, std::ostream* os) { *os << c.file; }

class Hostile : public ::testing::TestWithParam<HostileCase> {};

TEST_P(Hostile, EndsWithTheRightErrorAndTheNextRequestWorks) {
    const HostileCase& c = GetParam();
    auto m = must_load(wat(c.file));
    Request req = make_request();
    req.limits.time_budget = std::chrono::milliseconds(300);
    req.limits.max_emits = 1000;
    const auto t0 = std::chrono::steady_clock::now();
    Outcome o = sandbox().run(*m, req);
    const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(to_string(o.error), to_string(c.kind)) << o.message;
    EXPECT_NE(o.message.find(c.message_part), std::string::npos) << o.message;
    EXPECT_TRUE(o.response.empty());
    EXPECT_LT(ms, 5000) << "a hostile guest must not hold the host";
    std::printf("[ hostile ] %-18s -> %-15s %s\n", c.file, std::string(to_string(o.error)).c_str(), o.message.c_str());
    expect_echo_works();
}

INSTANTIATE_TEST_SUITE_P(
    Guests, Hostile,
    ::testing::Values(HostileCase{"loop", ErrorKind::deadline, "time budget of 300 ms exceeded"},
                      HostileCase{"grow", ErrorKind::memory_limit, "memory limit"},
                      HostileCase{"big_memory", ErrorKind::memory_limit, "memory limit"},
                      HostileCase{"recurse", ErrorKind::stack_overflow, "stack overflow"},
                      HostileCase{"trap", ErrorKind::trap, "unreachable"},
                      HostileCase{"oob_access", ErrorKind::trap, "out of bounds"},
                      HostileCase{"bad_alloc", ErrorKind::guest_error, "realm_alloc"},
                      HostileCase{"wrong_version", ErrorKind::abi_version, "ABI version 2"},
                      HostileCase{"no_response", ErrorKind::no_response, "response_write"},
                      HostileCase{"emit_flood", ErrorKind::emit_limit, "emit limit exceeded"},
                      HostileCase{"init_fails", ErrorKind::guest_error, "realm_init returned -5"},
                      HostileCase{"start_calls_host", ErrorKind::no_response, "response_write"}),
    [](const ::testing::TestParamInfo<HostileCase>& i) { return std::string(i.param.file); });

TEST(Sandbox, DeadlineWhileTheBackendIsSlow) {
    auto m = must_load(wat("slow_feed"));
    Request req = make_request();
    req.allowed_models = {"slow"};
    req.limits.time_budget = std::chrono::milliseconds(150);
    const auto t0 = std::chrono::steady_clock::now();
    Outcome o = sandbox().run(*m, req);
    const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(o.error, ErrorKind::deadline) << o.message;
    EXPECT_NE(o.message.find("time budget of 150 ms exceeded"), std::string::npos) << o.message;
    EXPECT_LT(ms, 1000) << "the overshoot should be about one backend call";
    std::printf("[ slow    ] %s after %.0f ms\n", o.message.c_str(), ms);
    expect_echo_works();
}

TEST(Sandbox, LoadErrorsNameTheImportOrExport) {
    const std::pair<const char*, const char*> cases[] = {
        {"missing_export", "missing export `realm_handle_request`"},
        {"mistyped_export", "export `realm_handle_request` has type () -> (i32), ABI v1 says (i32, i32) -> (i32)"},
        {"unknown_import", "unknown import `realm::launch_missiles`"},
        {"unknown_module", "unknown import `env::system`"},
        {"mistyped_import", "import `realm::log` has type (i32) -> (i32), ABI v1 says (i32, i32, i32) -> (i32)"},
    };
    for (const auto& [file, msg] : cases) {
        auto m = sandbox().load_file(wat(file));
        ASSERT_FALSE(m.ok()) << file;
        EXPECT_NE(m.error().message.find(msg), std::string::npos) << file << ": " << m.error().message;
        std::printf("[ load    ] %-18s -> %s\n", file, m.error().message.c_str());
    }
    const std::string junk = "definitely not wasm (";
    auto m = sandbox().load(std::span(reinterpret_cast<const uint8_t*>(junk.data()), junk.size()));
    ASSERT_FALSE(m.ok());
    EXPECT_NE(m.error().message.find("neither a wasm binary nor valid WAT"), std::string::npos) << m.error().message;
    expect_echo_works();
}

TEST(Sandbox, EveryHostFunctionRejectsBadPointersAndHandles) {
    auto abuse = must_load(test_guest("sandbox_abuse"));
    // First request: learn handles that belong to it...
    Request first = make_request(R"({"model":"tiny"})");
    first.allowed_models = {"tiny"};
    Outcome o1 = sandbox().run(*abuse, first);
    ASSERT_TRUE(o1.ok()) << to_string(o1.error) << ": " << o1.message;
    const auto r1 = nlohmann::json::parse(o1.response);
    // ...then hand them to a second request (another tenant) as "foreign" handles.
    Request second = make_request(nlohmann::json{{"foreign_model", r1["my_model"]}, {"foreign_seq", r1["my_seq"]}}.dump());
    second.tenant = "other-tenant";
    int log_lines = 0;
    second.on_log = [&](LogLevel, std::string_view) { ++log_lines; };
    Outcome o2 = sandbox().run(*abuse, second);
    ASSERT_TRUE(o2.ok()) << to_string(o2.error) << ": " << o2.message;
    const auto r = nlohmann::json::parse(o2.response);

    const std::map<std::string, int> expected = {
        {"last_error_oob", REALM_E_OUT_OF_BOUNDS},
        {"last_error_negcap", REALM_E_INVALID_ARGUMENT},
        {"log_oob", REALM_E_OUT_OF_BOUNDS},
        {"log_huge", REALM_E_OUT_OF_BOUNDS},
        {"log_neg", REALM_E_INVALID_ARGUMENT},
        {"log_level", REALM_E_INVALID_ARGUMENT},
        {"request_oob", REALM_E_OUT_OF_BOUNDS},
        {"request_end", REALM_E_OUT_OF_BOUNDS},
        {"request_size", static_cast<int>(second.body_json.size())},
        {"response_oob", REALM_E_OUT_OF_BOUNDS},
        {"response_huge", REALM_E_LIMIT},
        {"response_not_json", REALM_E_INVALID_ARGUMENT},
        {"emit_oob", REALM_E_OUT_OF_BOUNDS},
        {"emit_huge", REALM_E_OUT_OF_BOUNDS},
        {"emit_neg", REALM_E_INVALID_ARGUMENT},
        {"model_open_oob", REALM_E_OUT_OF_BOUNDS},
        {"model_open_huge", REALM_E_INVALID_ARGUMENT},
        {"model_open_forbidden", REALM_E_NOT_FOUND},
        {"model_open_unknown", REALM_E_NOT_FOUND},
        {"model_open", 0},
        {"model_info_zero", REALM_E_BAD_HANDLE},
        {"model_info_random", REALM_E_BAD_HANDLE},
        {"model_info_oob", REALM_E_OUT_OF_BOUNDS},
        {"eog_range", REALM_E_INVALID_ARGUMENT},
        {"tokenize_text_oob", REALM_E_OUT_OF_BOUNDS},
        {"tokenize_out_oob", REALM_E_OUT_OF_BOUNDS},
        {"tokenize_out_end", REALM_E_OUT_OF_BOUNDS},
        {"tokenize_flags", REALM_E_INVALID_ARGUMENT},
        {"tokenize_huge", REALM_E_LIMIT},
        {"tokenize_negcap", REALM_E_INVALID_ARGUMENT},
        {"detokenize_oob", REALM_E_OUT_OF_BOUNDS},
        {"detokenize_huge", REALM_E_LIMIT},
        {"detokenize_bad_token", REALM_E_INVALID_ARGUMENT},
        {"detokenize_out_oob", REALM_E_OUT_OF_BOUNDS},
        {"template_oob", REALM_E_OUT_OF_BOUNDS},
        {"template_not_array", REALM_E_INVALID_ARGUMENT},
        {"template_huge", REALM_E_LIMIT},
        {"seq_open_bad", REALM_E_BAD_HANDLE},
        {"seq_open", 0},
        {"seq_open_wrong_kind", REALM_E_BAD_HANDLE},
        {"seq_feed_wrong_kind", REALM_E_BAD_HANDLE},
        {"seq_logits_before_feed", REALM_E_STATE},
        {"sample_before_feed", REALM_E_STATE},
        {"seq_feed_oob", REALM_E_OUT_OF_BOUNDS},
        {"seq_feed_huge", REALM_E_LIMIT},
        {"seq_feed_neg", REALM_E_INVALID_ARGUMENT},
        {"seq_feed_bad_token", REALM_E_INVALID_ARGUMENT},
        {"seq_feed", 3},
        {"seq_logits_oob", REALM_E_OUT_OF_BOUNDS},
        {"seq_logits_small", 258},
        {"top_k_zero", REALM_E_INVALID_ARGUMENT},
        {"top_k_oob", REALM_E_OUT_OF_BOUNDS},
        {"top_k", 5},
        {"sample_params_oob", REALM_E_OUT_OF_BOUNDS},
        {"sample_params_len", REALM_E_INVALID_ARGUMENT},
        {"sample_params_nan", REALM_E_INVALID_ARGUMENT},
        {"sample_params_range", REALM_E_INVALID_ARGUMENT},
        {"sample_params_len_v0", REALM_E_INVALID_ARGUMENT},
        {"sample_typical_range", REALM_E_INVALID_ARGUMENT},
        {"sample_freq_inf", REALM_E_INVALID_ARGUMENT},
        {"sample_presence_nan", REALM_E_INVALID_ARGUMENT},
        {"sample_reserved", REALM_E_INVALID_ARGUMENT},
        {"sample_greedy", 100},
        {"sample_bias_ban", 99},  // the next best ('c'; ties go to the lower id)
        {"sample_bias_sum", 7},
        {"sample_bias_none_oob_ptr", 100},
        {"sample_bias_oob", REALM_E_OUT_OF_BOUNDS},
        {"sample_bias_end", REALM_E_OUT_OF_BOUNDS},
        {"sample_bias_too_many", REALM_E_INVALID_ARGUMENT},
        {"sample_bias_huge_n", REALM_E_INVALID_ARGUMENT},
        {"sample_bias_nan", REALM_E_INVALID_ARGUMENT},
        {"sample_bias_pos_inf", REALM_E_INVALID_ARGUMENT},
        {"sample_bias_token_range", REALM_E_INVALID_ARGUMENT},
        {"step_bias_token_neg", REALM_E_INVALID_ARGUMENT},
        {"sample_bias_overflow", REALM_E_INVALID_ARGUMENT},
        {"step_result_oob", REALM_E_OUT_OF_BOUNDS},
        {"step_text_oob", REALM_E_OUT_OF_BOUNDS},
        {"step_text_end", REALM_E_OUT_OF_BOUNDS},
        {"foreign_model", REALM_E_BAD_HANDLE},
        {"foreign_seq", REALM_E_BAD_HANDLE},
        {"seq_close", 0},
        {"seq_close_again", REALM_E_BAD_HANDLE},
        {"seq_feed_closed", REALM_E_BAD_HANDLE},
        {"log_flood_last", REALM_E_LIMIT},
        {"last_error_len_positive", 1},
    };
    for (const auto& [name, code] : expected) {
        ASSERT_TRUE(r.contains(name)) << name;
        EXPECT_EQ(r[name].get<int>(), code) << name;
    }
    EXPECT_EQ(r.size(), expected.size() + 2) << o2.response;  // + my_model, my_seq
    EXPECT_EQ(log_lines, 1000);  // Limits::max_log_lines; the rest were dropped
    // Handles carry a per-request tag: the second request's handles differ from the first's.
    EXPECT_NE(r["my_model"], r1["my_model"]);
    EXPECT_EQ(g_live_sequences.load(), 0);
    expect_echo_works();
}

TEST(Sandbox, PerTenantMemoryCap) {
    auto echo = must_load(sdk_guest("echo"));
    // The echo guest copies the request twice (request buffer + response): 3 MiB body needs > 2 MiB.
    Request req = make_request("\"" + std::string(3u << 20, 'x') + "\"");
    req.limits.memory_bytes = 2u << 20;
    req.limits.max_emits = 1u << 20;
    Outcome o = sandbox().run(*echo, req);
    EXPECT_EQ(o.error, ErrorKind::memory_limit) << o.message;
    req.limits.memory_bytes = 64u << 20;
    o = sandbox().run(*echo, req);
    EXPECT_TRUE(o.ok()) << o.message;
    expect_echo_works();
}

TEST(Sandbox, OversizedRequestIsRefusedBeforeTheGuestRuns) {
    auto echo = must_load(sdk_guest("echo"));
    Request req = make_request("\"" + std::string(1024, 'x') + "\"");
    req.limits.max_request_bytes = 100;
    Outcome o = sandbox().run(*echo, req);
    EXPECT_EQ(o.error, ErrorKind::invalid_request) << o.message;
}

TEST(Sandbox, CancellationIsVisibleToTheGuest) {
    auto echo = must_load(sdk_guest("echo"));
    Request req = make_request();
    req.cancelled = std::make_shared<std::atomic<bool>>(true);
    Outcome o = sandbox().run(*echo, req);
    EXPECT_EQ(o.error, ErrorKind::cancelled) << o.message;
    EXPECT_NE(o.message.find(std::to_string(REALM_E_CANCELLED)), std::string::npos) << o.message;
    expect_echo_works();
}

TEST(Sandbox, ConcurrentRequestsAreIsolated) {
    auto loop = must_load(wat("loop"));
    auto echo = must_load(sdk_guest("echo"));
    std::atomic<int> echo_ok{0}, loop_deadline{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 5; ++i) {
                Request req = make_request();
                req.request_id = "t" + std::to_string(t) + "-" + std::to_string(i);
                if (t % 2 == 0) {
                    req.limits.time_budget = std::chrono::milliseconds(50);
                    if (sandbox().run(*loop, req).error == ErrorKind::deadline) ++loop_deadline;
                } else if (sandbox().run(*echo, req).ok()) {
                    ++echo_ok;
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(echo_ok.load(), 10);
    EXPECT_EQ(loop_deadline.load(), 10);
}

TEST(Sandbox, FuelLimitsWhenEnabled) {
    EngineConfig cfg = test_config();
    cfg.fuel = true;
    cfg.max_instances = 4;
    auto sb = Sandbox::create(cfg, std::make_shared<TinyBackend>());
    ASSERT_TRUE(sb.ok()) << sb.error().message;
    auto loop = must_load(wat("loop"), **sb);
    Request req = make_request();
    req.limits.fuel = 100000;
    Outcome o = (*sb)->run(*loop, req);
    EXPECT_EQ(o.error, ErrorKind::fuel) << o.message;
    auto echo = must_load(sdk_guest("echo"), **sb);
    req.limits.fuel = 10'000'000;
    o = (*sb)->run(*echo, req);
    ASSERT_TRUE(o.ok()) << o.message;
    EXPECT_GT(o.stats.fuel_consumed, 0u);
    std::printf("[ fuel    ] echo consumed %llu fuel\n", static_cast<unsigned long long>(o.stats.fuel_consumed));
}

TEST(Sandbox, ModuleCacheMemoryAndDisk) {
    const fs::path dir = fs::temp_directory_path() / ("realm-sandbox-cache-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    EngineConfig cfg = test_config();
    cfg.cache_dir = dir;
    cfg.max_instances = 4;
    std::ifstream f(sdk_guest("echo"), std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    fs::path file;
    {
        auto sb = Sandbox::create(cfg, nullptr);
        ASSERT_TRUE(sb.ok()) << sb.error().message;
        LoadInfo info;
        ASSERT_TRUE((*sb)->load(bytes, &info).ok());
        EXPECT_EQ(info.source, LoadInfo::Source::compiled);
        ASSERT_TRUE((*sb)->load(bytes, &info).ok());
        EXPECT_EQ(info.source, LoadInfo::Source::memory);
        EXPECT_EQ((*sb)->cached_modules(), 1u);
        for (const auto& e : fs::directory_iterator(dir)) file = e.path();
        ASSERT_FALSE(file.empty());
        EXPECT_EQ(file.filename().string().substr(0, 64), info.hash);
    }
    {
        auto sb = Sandbox::create(cfg, nullptr);  // a "restarted process"
        ASSERT_TRUE(sb.ok());
        LoadInfo info;
        auto m = (*sb)->load(bytes, &info);
        ASSERT_TRUE(m.ok()) << m.error().message;
        EXPECT_EQ(info.source, LoadInfo::Source::disk);
        Outcome o = (*sb)->run(**m, make_request());
        EXPECT_TRUE(o.ok()) << o.message;
    }
    {
        // Corrupt the payload: the file must be rejected and the module recompiled, never deserialized.
        std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
        io.seekp(200);
        io.put('\x5a');
        io.put('\xa5');
    }
    {
        auto sb = Sandbox::create(cfg, nullptr);
        ASSERT_TRUE(sb.ok());
        LoadInfo info;
        auto m = (*sb)->load(bytes, &info);
        ASSERT_TRUE(m.ok()) << m.error().message;
        EXPECT_EQ(info.source, LoadInfo::Source::compiled);
        EXPECT_TRUE((*sb)->run(**m, make_request()).ok());
    }
    {
        // A different engine configuration never picks up the other configuration's files.
        EngineConfig other = cfg;
        other.max_wasm_stack = 256u << 10;
        auto sb = Sandbox::create(other, nullptr);
        ASSERT_TRUE(sb.ok());
        LoadInfo info;
        ASSERT_TRUE((*sb)->load(bytes, &info).ok());
        EXPECT_EQ(info.source, LoadInfo::Source::compiled);
    }
    fs::remove_all(dir);
}

TEST(Sandbox, NoBackendMeansUnsupportedNotACrash) {
    EngineConfig cfg = test_config();
    cfg.max_instances = 2;
    auto sb = Sandbox::create(cfg, nullptr);
    ASSERT_TRUE(sb.ok());
    auto gen = must_load(test_guest("sandbox_generate"), **sb);
    Outcome o = (*sb)->run(*gen, make_request());
    EXPECT_EQ(o.error, ErrorKind::guest_error) << o.message;
    EXPECT_NE(o.message.find("no inference backend"), std::string::npos) << o.message;
    // A module compiled by another engine is refused, not run (wasmtime would abort the process).
    auto foreign = must_load(sdk_guest("echo"));
    o = (*sb)->run(*foreign, make_request());
    EXPECT_EQ(o.error, ErrorKind::host) << o.message;
}

TEST(Sandbox, InstantiationCost) {
    auto echo = must_load(sdk_guest("echo"));
    std::vector<double> inst, total;
    for (int i = 0; i < 300; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        Outcome o = sandbox().run(*echo, make_request());
        total.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
        ASSERT_TRUE(o.ok()) << o.message;
        inst.push_back(o.stats.instantiate_us);
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    std::printf("[ perf    ] echo: instantiate (store + pooled instance) median %.1f us, min %.1f us; "
                "whole request median %.1f us (300 runs)\n",
                median(inst), *std::min_element(inst.begin(), inst.end()), median(total));
}

TEST(Sandbox, EngineCreationFailureIsAnErrorNotAnAbort) {
    EngineConfig cfg = test_config();
    cfg.max_instances = 50'000'000;  // ~ 200 PiB of address space: the pool cannot be reserved
    auto sb = Sandbox::create(cfg, nullptr);
    ASSERT_FALSE(sb.ok());
    std::printf("[ engine  ] %s\n", sb.error().message.c_str());
    cfg = test_config();
    cfg.max_instances = 0;
    EXPECT_FALSE(Sandbox::create(cfg, nullptr).ok());
    expect_echo_works();
}

TEST(Sandbox, PoolExhaustionFailsOnlyTheExtraRequest) {
    EngineConfig cfg = test_config();
    cfg.max_instances = 1;
    auto sb = Sandbox::create(cfg, nullptr);
    ASSERT_TRUE(sb.ok()) << sb.error().message;
    Sandbox& s = **sb;
    auto echo = must_load(sdk_guest("echo"), s);
    // The first request holds the only pool slot while it is blocked inside its first emit.
    std::mutex mu;
    std::condition_variable cv;
    bool inside = false, release = false;
    Outcome first;
    std::thread t([&] {
        Request req = make_request();
        req.on_chunk = [&](std::string_view) {
            std::unique_lock lock(mu);
            inside = true;
            cv.notify_all();
            cv.wait(lock, [&] { return release; });
        };
        first = s.run(*echo, req);
    });
    {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return inside; });
    }
    Outcome second = s.run(*echo, make_request());
    EXPECT_EQ(second.error, ErrorKind::instantiate) << second.message;
    std::printf("[ pool    ] %s\n", second.message.c_str());
    {
        std::lock_guard lock(mu);
        release = true;
    }
    cv.notify_all();
    t.join();
    EXPECT_TRUE(first.ok()) << first.message;
    expect_echo_works(s);
}

// Property test: thousands of calls with edge-case and random arguments (mixed with real handles) to every
// import. Whatever the arguments, the host must answer with codes (or end the request with a guest-side
// error kind), never with a host error, a crash or an ASan report.
TEST(Sandbox, RandomArgumentsToEveryImportNeverHurtTheHost) {
    struct Imp {
        const char* name;
        int params;
        const char* result;
    };
    const Imp imports[] = {
        {"last_error", 2, "i32"},   {"log", 3, "i32"},         {"request_read", 2, "i32"}, {"response_write", 2, "i32"},
        {"emit", 2, "i32"},         {"cancelled", 0, "i32"},   {"now_ms", 0, "i64"},       {"remaining_ms", 0, "i64"},
        {"model_open", 2, "i32"},   {"model_info", 3, "i32"},  {"token_is_eog", 2, "i32"}, {"tokenize", 6, "i32"},
        {"detokenize", 6, "i32"},   {"chat_template", 6, "i32"}, {"seq_open", 1, "i32"},   {"seq_close", 1, "i32"},
        {"seq_feed", 3, "i32"},     {"seq_logits", 3, "i32"},  {"seq_top_k", 4, "i32"},    {"sample", 3, "i32"},
        {"step", 6, "i32"},
    };
    const int64_t edges[] = {0, 1, -1, 4, 16, 32, 1024, 65532, 65535, 65536, 0x7fffffff, INT32_MIN,
                             static_cast<int32_t>(0xffffff00u), 258, 257, 32};
    std::mt19937 rng(12345);
    for (int round = 0; round < 8; ++round) {
        std::string w = "(module\n";
        for (const Imp& i : imports) {
            w += std::string("  (import \"realm\" \"") + i.name + "\" (func $" + i.name + " (param";
            for (int k = 0; k < i.params; ++k) w += " i32";
            w += std::string(") (result ") + i.result + ")))\n";
        }
        w += "  (memory (export \"memory\") 2)\n  (data (i32.const 16) \"tiny\")\n  (data (i32.const 32) \"\\61\\00\\00\\00\")\n";
        w += "  (func (export \"realm_abi_version\") (result i32) (i32.const 1))\n"
             "  (func (export \"realm_alloc\") (param i32) (result i32) (i32.const 4096))\n"
             "  (func (export \"realm_free\") (param i32))\n"
             "  (func (export \"realm_init\") (result i32) (i32.const 0))\n"
             "  (func (export \"realm_handle_request\") (param i32 i32) (result i32) (local $m i32) (local $s i32)\n"
             "    (local.set $m (call $model_open (i32.const 16) (i32.const 4)))\n"
             "    (local.set $s (call $seq_open (local.get $m)))\n"
             "    (drop (call $seq_feed (local.get $s) (i32.const 32) (i32.const 1)))\n";
        for (int c = 0; c < 400; ++c) {
            const Imp& i = imports[rng() % std::size(imports)];
            w += std::string("    (drop (call $") + i.name;
            for (int k = 0; k < i.params; ++k) {
                const uint32_t pick = rng() % 20;
                if (pick < 2) w += pick == 0 ? " (local.get $m)" : " (local.get $s)";
                else if (pick < 16) w += " (i32.const " + std::to_string(edges[rng() % std::size(edges)]) + ")";
                else w += " (i32.const " + std::to_string(static_cast<int32_t>(rng())) + ")";
            }
            w += "))\n";
        }
        w += "    (i32.const 0)))\n";
        auto m = sandbox().load(std::span(reinterpret_cast<const uint8_t*>(w.data()), w.size()));
        ASSERT_TRUE(m.ok()) << m.error().message;
        Request req = make_request();
        req.limits.max_emits = 50;  // some rounds flood: that must end as emit_limit
        Outcome o = sandbox().run(**m, req);
        EXPECT_TRUE(o.ok() || o.error == ErrorKind::no_response || o.error == ErrorKind::emit_limit)
            << to_string(o.error) << ": " << o.message;
        std::printf("[ random  ] round %d: %s (%u host calls)\n", round,
                    o.ok() ? "ok" : std::string(to_string(o.error)).c_str(), o.stats.host_calls);
    }
    EXPECT_EQ(g_live_sequences.load(), 0);
    expect_echo_works();
}
