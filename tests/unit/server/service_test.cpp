// Service (the transport-independent server core) and AdminApi over a real Store, the stories260K model and
// the default guest: authentication, validation statuses, admission, a run end to end, usage rows, metrics.
#include "server/service.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <thread>

#include "server/admin.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace realm::server;

namespace {

std::vector<uint8_t> read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class ServiceTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("realm_service_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        auto s = Store::open(dir_ / "realm.db");
        ASSERT_TRUE(s) << s.error().message;
        store_ = std::move(*s);
        const char* shared = std::getenv("REALM_SHARED_DIR");
        ASSERT_NE(shared, nullptr);
        engine_ = std::make_shared<realm::sandbox::EngineBackend>();
        ASSERT_TRUE(engine_->add_model("stories", (fs::path(shared) / "models" / "stories260K.gguf").string(), {1, 256, {}}));
        guest_ = read_file(fs::path(REALM_GUEST_DIR) / "default.wasm");
        ASSERT_FALSE(guest_.empty());
    }
    void TearDown() override {
        service_.reset();
        store_.reset();
        fs::remove_all(dir_);
    }

    Service& service(ServiceOptions opts = {}) {
        auto s = Service::create(engine_, *store_, guest_, opts);
        EXPECT_TRUE(s) << s.error().message;
        service_ = std::move(*s);
        return *service_;
    }

    Principal tenant(const std::string& name, std::vector<std::string> models, Limits limits = {}) {
        Tenant t;
        t.name = name;
        t.models = std::move(models);
        t.limits = limits;
        EXPECT_TRUE(store_->add_tenant(t));
        auto key = store_->create_key(name, "test");
        EXPECT_TRUE(key);
        keys_[name] = key->secret;
        auto a = service_->authenticate("Bearer " + key->secret);
        EXPECT_TRUE(a.principal) << a.error.message;
        return *a.principal;
    }

    struct Result {
        std::string text;
        json response;
        std::optional<ApiError> error;
    };
    // Submits and waits for on_done / on_error.
    Result run(Job job, std::shared_ptr<std::atomic<bool>> cancel = nullptr) {
        auto r = std::make_shared<Result>();
        std::promise<void> done;
        GenerateHandlers h;
        h.on_text = [r](uint32_t, std::string_view t) { r->text += t; };
        h.on_done = [r, &done](json resp) {
            r->response = std::move(resp);
            done.set_value();
        };
        h.on_error = [r, &done](const ApiError& e) {
            r->error = e;
            done.set_value();
        };
        service_->submit(std::move(job), std::move(h), std::move(cancel));
        done.get_future().wait();
        return *r;
    }

    fs::path dir_;
    std::unique_ptr<Store> store_;
    std::shared_ptr<realm::sandbox::EngineBackend> engine_;
    std::vector<uint8_t> guest_;
    std::unique_ptr<Service> service_;
    std::map<std::string, std::string> keys_;
};

TEST_F(ServiceTest, Authentication) {
    auto& svc = service();
    EXPECT_EQ(svc.authenticate("").error.status, 401);
    EXPECT_EQ(svc.authenticate("Bearer ").error.kind, "auth_missing");
    EXPECT_EQ(svc.authenticate("Bearer rlm_x").error.kind, "auth_malformed");
    EXPECT_EQ(svc.authenticate(std::string("Bearer \0\xff", 9)).error.status, 401);
    auto who = tenant("acme", {"*"});
    EXPECT_EQ(who.tenant.name, "acme");
    EXPECT_TRUE(svc.authenticate("bearer   " + keys_["acme"]).principal);  // scheme is case-insensitive
    EXPECT_TRUE(svc.authenticate(keys_["acme"]).principal);                // a bare key
}

TEST_F(ServiceTest, ValidationStatuses) {
    auto& svc = service();
    Limits l;
    l.max_tokens_per_request = 8;
    auto who = tenant("acme", {"stories"}, l);
    auto other = tenant("other", {"nothing-here"});
    const auto status = [&](const Principal& p, Endpoint ep, std::string_view body) {
        auto r = svc.prepare(p, ep, body);
        return r.job ? 200 : r.error.status;
    };
    EXPECT_EQ(status(who, Endpoint::completions, "{"), 400);
    EXPECT_EQ(status(who, Endpoint::completions, "[]"), 400);
    EXPECT_EQ(status(who, Endpoint::completions, "{\"model\":\"stories\",\"prompt\":\"\xff\"}"), 400);
    EXPECT_EQ(status(who, Endpoint::completions, "{\"prompt\":\"x\"}"), 400);
    EXPECT_EQ(status(who, Endpoint::completions, "{\"model\":\"nope\",\"prompt\":\"x\"}"), 404);
    EXPECT_EQ(status(other, Endpoint::completions, "{\"model\":\"stories\",\"prompt\":\"x\"}"), 403);
    EXPECT_EQ(status(who, Endpoint::chat, "{\"model\":\"stories\",\"messages\":[]}"), 400);
    EXPECT_EQ(status(who, Endpoint::chat, "{\"model\":\"stories\",\"messages\":[1]}"), 400);
    EXPECT_EQ(status(who, Endpoint::completions, "{\"model\":\"stories\",\"prompt\":\"x\",\"n\":17}"), 400);
    EXPECT_EQ(status(who, Endpoint::completions, "{\"model\":\"stories\",\"prompt\":\"x\",\"max_tokens\":9}"), 400);
    EXPECT_EQ(status(who, Endpoint::completions, "{\"model\":\"stories\",\"prompt\":\"x\",\"max_tokens\":-1}"), 400);
    EXPECT_EQ(status(who, Endpoint::completions, "{\"model\":\"stories\",\"prompt\":\"x\",\"stream\":1}"), 400);
    EXPECT_EQ(status(who, Endpoint::completions, "{\"model\":\"stories\",\"prompt\":\"x\",\"seed\":-2}"), 400);

    auto ok = svc.prepare(who, Endpoint::completions,
                          R"({"model":"stories","prompt":["x"],"n":2,"stream":true,"stream_options":{"include_usage":true}})");
    ASSERT_TRUE(ok.job);
    EXPECT_EQ(ok.job->n, 2u);
    EXPECT_TRUE(ok.job->stream && ok.job->include_usage);
    EXPECT_EQ(ok.job->guest_body["max_tokens"], 8);  // the tenant's cap when the request names none
    EXPECT_EQ(ok.job->guest_body["prompt"], "x");
    EXPECT_FALSE(ok.job->guest_body.contains("n"));

    auto rows = store_->usage("acme", 100);
    ASSERT_TRUE(rows);
    EXPECT_EQ(rows->size(), 12u);  // every refusal wrote its row
    EXPECT_NE(svc.metrics_text().find("realm_requests_total{endpoint=\"/v1/completions\",model=\"stories\",status=\"403\",tenant=\"other\"} 1"),
              std::string::npos);
}

TEST_F(ServiceTest, RateLimitAndOverload) {
    ServiceOptions o;
    o.queue_capacity = 0;  // every admitted job is refused by the queue
    auto& svc = service(o);
    Limits l;
    l.requests_per_minute = 1;
    auto who = tenant("acme", {"*"}, l);
    auto first = svc.prepare(who, Endpoint::completions, R"({"model":"stories","prompt":"x"})");
    ASSERT_TRUE(first.job);
    auto second = svc.prepare(who, Endpoint::completions, R"({"model":"stories","prompt":"x"})");
    ASSERT_FALSE(second.job);
    EXPECT_EQ(second.error.status, 429);
    EXPECT_GE(second.error.retry_after, 1u);
    auto r = run(std::move(*first.job));
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->status, 503);
    EXPECT_NE(svc.metrics_text().find("realm_rate_limited_total{limit=\"requests_per_minute\",tenant=\"acme\"} 1"),
              std::string::npos);
}

TEST_F(ServiceTest, RunsTheGuestAndRecordsUsage) {
    auto& svc = service();
    auto who = tenant("acme", {"*"});
    auto p = svc.prepare(who, Endpoint::completions,
                         R"({"model":"stories","prompt":"Once upon a time","max_tokens":6,"temperature":0,"stream":true})");
    ASSERT_TRUE(p.job);
    const std::string id = p.job->id;
    auto r = run(std::move(*p.job));
    ASSERT_FALSE(r.error) << r.error->message;
    EXPECT_EQ(r.response["object"], "text_completion");
    EXPECT_EQ(r.response["id"], id);
    EXPECT_EQ(r.response["choices"][0]["text"], r.text);  // streamed text == final text
    EXPECT_EQ(r.response["usage"]["completion_tokens"], 6);
    auto rows = store_->usage("acme", 1);
    ASSERT_TRUE(rows);
    ASSERT_EQ(rows->size(), 1u);
    EXPECT_EQ((*rows)[0].request_id, id);
    EXPECT_EQ((*rows)[0].status, 200);
    EXPECT_EQ((*rows)[0].completion_tokens, 6u);
    // The worker counts the job as finished just after its handler returned.
    for (int i = 0; i < 1000 && svc.in_flight() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(svc.in_flight(), 0u);

    // A guest-side validation error is a 400 with the guest's message.
    auto bad = svc.prepare(who, Endpoint::completions, R"({"model":"stories","prompt":"x","temperature":-1})");
    ASSERT_TRUE(bad.job);
    auto e = run(std::move(*bad.job));
    ASSERT_TRUE(e.error);
    EXPECT_EQ(e.error->status, 400);
    EXPECT_NE(e.error->message.find("temperature"), std::string::npos);

    // Cancelled before it ran: 499, and nothing generated.
    auto c = svc.prepare(who, Endpoint::completions, R"({"model":"stories","prompt":"x","max_tokens":4})");
    ASSERT_TRUE(c.job);
    auto flag = std::make_shared<std::atomic<bool>>(true);
    auto cr = run(std::move(*c.job), flag);
    ASSERT_TRUE(cr.error);
    EXPECT_EQ(cr.error->status, 499);
}

TEST_F(ServiceTest, HostileTenantGuestsFailOnlyTheirRequests) {
    auto& svc = service();
    Limits l;
    l.guest_time_ms = 200;
    auto trap = tenant("trapper", {"*"}, l);
    auto loop = tenant("looper", {"*"}, l);
    const fs::path wat_dir = fs::path(REALM_TEST_WAT_DIR);
    ASSERT_TRUE(store_->register_guest("trapper", read_file(wat_dir / "trap.wat")));
    ASSERT_TRUE(store_->register_guest("looper", read_file(wat_dir / "loop.wat")));
    // The tenant rows now name their guests.
    trap = *svc.authenticate(keys_["trapper"]).principal;
    loop = *svc.authenticate(keys_["looper"]).principal;
    const std::string body = R"({"model":"stories","prompt":"x","max_tokens":2})";

    auto t = run(std::move(*svc.prepare(trap, Endpoint::completions, body).job));
    ASSERT_TRUE(t.error);
    EXPECT_EQ(t.error->status, 500);
    EXPECT_EQ(t.error->code, "guest_trap");
    auto d = run(std::move(*svc.prepare(loop, Endpoint::completions, body).job));
    ASSERT_TRUE(d.error);
    EXPECT_EQ(d.error->code, "guest_deadline");
    const auto text = svc.metrics_text();
    EXPECT_NE(text.find("realm_guest_errors_total{kind=\"trap\",tenant=\"trapper\"} 1"), std::string::npos);
    EXPECT_NE(text.find("realm_guest_errors_total{kind=\"deadline\",tenant=\"looper\"} 1"), std::string::npos);

    // Everyone else is still served by the default guest.
    auto who = tenant("acme", {"*"});
    auto ok = run(std::move(*svc.prepare(who, Endpoint::completions, body).job));
    EXPECT_FALSE(ok.error);
}

TEST_F(ServiceTest, ErrorBodyIsOpenAiShaped) {
    ApiError e;
    e.status = 404;
    e.type = "invalid_request_error";
    e.message = "no";
    e.code = "model_not_found";
    EXPECT_EQ(e.body(), json::parse(R"({"error":{"message":"no","type":"invalid_request_error","param":null,"code":"model_not_found"}})"));
}

TEST_F(ServiceTest, AdminApi) {
    auto& svc = service();
    AdminApi admin(svc);
    ASSERT_TRUE(store_->set_admin_key("admin-key-0123456789"));
    const std::string auth = "Bearer admin-key-0123456789";
    EXPECT_EQ(admin.handle("GET", "/admin/tenants", "", "", "").status, 401);
    EXPECT_EQ(admin.handle("GET", "/admin/tenants", "", "", "Bearer wrong-key-0123456789").status, 401);
    auto r = admin.handle("POST", "/admin/tenants", "", R"({"name":"t1","models":["stories"],"limits":{"max_concurrent":2}})", auth);
    ASSERT_EQ(r.status, 201) << r.body.dump();
    EXPECT_EQ(r.body["limits"]["max_concurrent"], 2);
    EXPECT_EQ(admin.handle("POST", "/admin/tenants", "", R"({"name":"t1"})", auth).status, 409);
    EXPECT_EQ(admin.handle("POST", "/admin/tenants", "", "nope", auth).status, 400);
    auto k = admin.handle("POST", "/admin/tenants/t1/keys", "", "", auth);
    ASSERT_EQ(k.status, 201);
    EXPECT_TRUE(svc.authenticate(k.body["secret"].get<std::string>()).principal);
    EXPECT_EQ(admin.handle("DELETE", "/admin/keys/abc", "", "", auth).status, 400);
    EXPECT_EQ(admin.handle("DELETE", "/admin/keys/" + std::to_string(k.body["key"]["id"].get<int64_t>()), "", "", auth).status, 200);
    EXPECT_FALSE(svc.authenticate(k.body["secret"].get<std::string>()).principal);
    EXPECT_EQ(admin.handle("PUT", "/admin/tenants/t1/guest", "", "not wasm", auth).status, 400);
    EXPECT_EQ(admin.handle("GET", "/admin/usage", "limit=0", "", auth).status, 400);
    EXPECT_EQ(admin.handle("DELETE", "/admin/tenants/t1", "", "", auth).status, 200);
    EXPECT_EQ(admin.handle("GET", "/admin/tenants/t1", "", "", auth).status, 404);
}

}  // namespace
