#include "server/store.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using namespace realm::server;

namespace {

// A fresh directory per test, removed afterwards.
class StoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        dir_ = fs::temp_directory_path() /
               ("realm-store-" + std::to_string(::getpid()) + "-" + info->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        path_ = dir_ / "realm.db";
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::unique_ptr<Store> open() {
        auto s = Store::open(path_);
        EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
        return s.ok() ? std::move(s).value() : nullptr;
    }

    static Tenant tenant(std::string name, std::vector<std::string> models = {"*"}) {
        Tenant t;
        t.name = std::move(name);
        t.models = std::move(models);
        return t;
    }

    fs::path dir_, path_;
};

// Direct read access to the database, bypassing Store.
class RawDb {
public:
    explicit RawDb(const fs::path& p) { EXPECT_EQ(sqlite3_open(p.c_str(), &db_), SQLITE_OK); }
    ~RawDb() { sqlite3_close(db_); }
    RawDb(const RawDb&) = delete;
    RawDb& operator=(const RawDb&) = delete;

    // First column of every row, as text.
    std::vector<std::string> column(const std::string& sql) {
        std::vector<std::string> out;
        sqlite3_stmt* s = nullptr;
        EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr), SQLITE_OK) << sqlite3_errmsg(db_);
        while (sqlite3_step(s) == SQLITE_ROW) {
            const auto* p = static_cast<const char*>(sqlite3_column_blob(s, 0));
            out.emplace_back(p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, 0))) : std::string());
        }
        sqlite3_finalize(s);
        return out;
    }
    void exec(const std::string& sql) {
        EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db_);
    }

private:
    sqlite3* db_ = nullptr;
};

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string sha256_bytes(std::string_view s) {
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(s.data(), s.size(), md, &n, EVP_sha256(), nullptr);
    return std::string(reinterpret_cast<const char*>(md), n);
}

}  // namespace

TEST_F(StoreTest, CreatesVersionedSchemaInWalMode) {
    auto store = open();
    ASSERT_TRUE(store);
    RawDb raw(path_);
    EXPECT_EQ(raw.column("PRAGMA user_version"), std::vector<std::string>{"1"});
    EXPECT_EQ(raw.column("PRAGMA journal_mode"), std::vector<std::string>{"wal"});
    const auto tables = raw.column("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
    EXPECT_EQ(tables, (std::vector<std::string>{"api_keys", "guests", "settings", "tenants", "usage"}));
}

TEST_F(StoreTest, RefusesNonDatabaseAndNewerSchema) {
    {
        std::ofstream(path_) << "this is not an SQLite database, just some text long enough to have a header";
    }
    auto bad = Store::open(path_);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.error().message.find("store: open"), std::string::npos) << bad.error().message;

    const fs::path other = dir_ / "newer.db";
    {
        RawDb raw(other);
        raw.exec("PRAGMA user_version = 99");
    }
    auto newer = Store::open(other);
    ASSERT_FALSE(newer.ok());
    EXPECT_NE(newer.error().message.find("newer"), std::string::npos) << newer.error().message;

    auto missing_dir = Store::open(dir_ / "no" / "such" / "dir.db");
    EXPECT_FALSE(missing_dir.ok());
}

TEST_F(StoreTest, ReopenKeepsData) {
    std::string secret;
    {
        auto store = open();
        Tenant t = tenant("acme", {"smollm2", "gemma3"});
        t.limits.requests_per_minute = 7;
        t.limits.tokens_per_minute = 1234;
        t.limits.max_concurrent = 2;
        t.limits.max_tokens_per_request = 99;
        t.limits.guest_memory_bytes = 1 << 20;
        t.limits.guest_time_ms = 500;
        ASSERT_TRUE(store->add_tenant(t).ok());
        auto k = store->create_key("acme", "ci");
        ASSERT_TRUE(k.ok());
        secret = k->secret;
        ASSERT_TRUE(store->set_admin_key("an admin key of 16+ bytes").ok());
    }
    auto store = open();
    auto t = store->get_tenant("acme");
    ASSERT_TRUE(t.ok()) << t.error().message;
    EXPECT_EQ(t->models, (std::vector<std::string>{"smollm2", "gemma3"}));
    EXPECT_EQ(t->limits.requests_per_minute, 7u);
    EXPECT_EQ(t->limits.tokens_per_minute, 1234u);
    EXPECT_EQ(t->limits.max_concurrent, 2u);
    EXPECT_EQ(t->limits.max_tokens_per_request, 99u);
    EXPECT_EQ(t->limits.guest_memory_bytes, 1u << 20);
    EXPECT_EQ(t->limits.guest_time_ms, 500u);
    EXPECT_GT(t->created_at, 0);
    EXPECT_FALSE(t->guest.has_value());
    auto a = store->authenticate(secret);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->status, AuthStatus::ok);
    EXPECT_EQ(a->tenant, "acme");
    EXPECT_EQ(store->check_admin_key("an admin key of 16+ bytes").value(), true);
}

TEST_F(StoreTest, TenantCrudAndValidation) {
    auto store = open();
    ASSERT_TRUE(store->add_tenant(tenant("b-2.x_Y")).ok());
    ASSERT_TRUE(store->add_tenant(tenant("a", {"smollm2"})).ok());

    auto dup = store->add_tenant(tenant("a"));
    ASSERT_FALSE(dup.ok());
    EXPECT_NE(dup.error().message.find("already exists"), std::string::npos);

    for (std::string bad : {std::string(), std::string(65, 'x'), std::string("a b"), std::string("a/b"),
                            std::string("a\0b", 3), std::string("é"), std::string("x;DROP TABLE tenants")}) {
        auto r = store->add_tenant(tenant(bad));
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_NE(r.error().message.find("invalid tenant name"), std::string::npos);
    }
    EXPECT_TRUE(store->add_tenant(tenant(std::string(64, 'x'))).ok());
    EXPECT_FALSE(store->add_tenant(tenant("m", {"bad,name"})).ok());
    EXPECT_FALSE(store->add_tenant(tenant("m", {""})).ok());
    Tenant zero_mem = tenant("m");
    zero_mem.limits.guest_memory_bytes = 0;
    EXPECT_FALSE(store->add_tenant(zero_mem).ok());
    Tenant zero_time = tenant("m");
    zero_time.limits.guest_time_ms = 0;
    EXPECT_FALSE(store->add_tenant(zero_time).ok());

    auto list = store->list_tenants();
    ASSERT_TRUE(list.ok());
    ASSERT_EQ(list->size(), 3u);
    EXPECT_EQ((*list)[0].name, "a");
    EXPECT_EQ((*list)[1].name, "b-2.x_Y");

    const Tenant& a = (*list)[0];
    EXPECT_TRUE(a.allows_model("smollm2"));
    EXPECT_FALSE(a.allows_model("gemma3"));
    EXPECT_TRUE((*list)[1].allows_model("anything"));

    Tenant changed = a;
    changed.models = {"gemma3"};
    changed.limits.requests_per_minute = 0;
    ASSERT_TRUE(store->update_tenant(changed).ok());
    auto got = store->get_tenant("a");
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->models, std::vector<std::string>{"gemma3"});
    EXPECT_EQ(got->limits.requests_per_minute, 0u);
    EXPECT_EQ(got->created_at, a.created_at);

    EXPECT_FALSE(store->update_tenant(tenant("nobody")).ok());
    auto missing = store->get_tenant("nobody");
    ASSERT_FALSE(missing.ok());
    EXPECT_NE(missing.error().message.find("unknown tenant 'nobody'"), std::string::npos);
    EXPECT_FALSE(store->remove_tenant("nobody").ok());
    ASSERT_TRUE(store->remove_tenant("a").ok());
    EXPECT_FALSE(store->get_tenant("a").ok());
}

TEST_F(StoreTest, KeyFormatAndAuthentication) {
    auto store = open();
    ASSERT_TRUE(store->add_tenant(tenant("acme")).ok());
    ASSERT_TRUE(store->add_tenant(tenant("other")).ok());
    auto k = store->create_key("acme", "ci");
    ASSERT_TRUE(k.ok()) << k.error().message;
    EXPECT_TRUE(std::regex_match(k->secret, std::regex("rlm_[0-9a-f]{16}_[0-9a-f]{64}"))) << k->secret;
    EXPECT_EQ(k->secret.substr(4, 16), k->key.prefix);
    EXPECT_EQ(k->key.tenant, "acme");
    EXPECT_EQ(k->key.label, "ci");
    auto k2 = store->create_key("other", "");
    ASSERT_TRUE(k2.ok());
    EXPECT_NE(k2->key.prefix, k->key.prefix);
    EXPECT_FALSE(store->create_key("nobody", "x").ok());

    auto status = [&](std::string_view presented) {
        auto a = store->authenticate(presented);
        EXPECT_TRUE(a.ok());
        return a.ok() ? a->status : AuthStatus::ok;
    };

    auto ok = store->authenticate(k->secret);
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ(ok->status, AuthStatus::ok);
    EXPECT_EQ(ok->tenant, "acme");
    EXPECT_EQ(ok->key_id, k->key.id);

    // The other tenant's key authenticates as the other tenant, never as acme.
    auto other = store->authenticate(k2->secret);
    ASSERT_TRUE(other.ok());
    EXPECT_EQ(other->status, AuthStatus::ok);
    EXPECT_EQ(other->tenant, "other");
    // acme's public prefix with other's secret: no key matches.
    EXPECT_EQ(status("rlm_" + k->key.prefix + "_" + k2->secret.substr(21)), AuthStatus::unknown);
    // Well-formed but never issued.
    EXPECT_EQ(status("rlm_0000000000000000_" + std::string(64, 'a')), AuthStatus::unknown);
    std::string flipped = k->secret;
    flipped.back() = flipped.back() == 'a' ? 'b' : 'a';
    EXPECT_EQ(status(flipped), AuthStatus::unknown);

    EXPECT_EQ(status(""), AuthStatus::malformed);
    EXPECT_EQ(status("Bearer " + k->secret), AuthStatus::malformed);
    EXPECT_EQ(status(k->secret.substr(0, k->secret.size() - 1)), AuthStatus::malformed);  // truncated
    EXPECT_EQ(status(k->secret + "0"), AuthStatus::malformed);
    std::string upper = k->secret;
    for (size_t i = 21; i < upper.size(); ++i) upper[i] = static_cast<char>(std::toupper(upper[i]));
    if (upper != k->secret) EXPECT_EQ(status(upper), AuthStatus::malformed);
    std::string nul = k->secret;
    nul[30] = '\0';
    EXPECT_EQ(status(nul), AuthStatus::malformed);
    EXPECT_EQ(status(k->secret + std::string(1, '\0')), AuthStatus::malformed);
    EXPECT_EQ(status(std::string(1 << 20, 'a')), AuthStatus::malformed);
    std::string no_sep = k->secret;
    no_sep[20] = 'x';
    EXPECT_EQ(status(no_sep), AuthStatus::malformed);

    auto keys = store->list_keys("acme");
    ASSERT_TRUE(keys.ok());
    ASSERT_EQ(keys->size(), 1u);
    EXPECT_TRUE((*keys)[0].last_used_at.has_value());
    EXPECT_FALSE((*keys)[0].revoked_at.has_value());
}

TEST_F(StoreTest, RevokedKeysAreDistinguished) {
    auto store = open();
    ASSERT_TRUE(store->add_tenant(tenant("acme")).ok());
    auto k = store->create_key("acme", "old");
    auto k2 = store->create_key("acme", "new");
    ASSERT_TRUE(k.ok() && k2.ok());
    ASSERT_TRUE(store->revoke_key(k->key.id).ok());
    ASSERT_TRUE(store->revoke_key(k->key.id).ok());  // idempotent
    auto unknown = store->revoke_key(987654);
    ASSERT_FALSE(unknown.ok());
    EXPECT_NE(unknown.error().message.find("unknown key id"), std::string::npos);

    auto a = store->authenticate(k->secret);
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->status, AuthStatus::revoked);
    EXPECT_EQ(to_string(a->status), "revoked");
    EXPECT_EQ(store->authenticate(k2->secret)->status, AuthStatus::ok);

    auto all = store->list_keys();
    ASSERT_TRUE(all.ok());
    ASSERT_EQ(all->size(), 2u);
    EXPECT_TRUE((*all)[0].revoked_at.has_value());
    EXPECT_FALSE((*all)[1].revoked_at.has_value());
}

TEST_F(StoreTest, StoresHashesNotSecrets) {
    std::vector<std::string> secrets;
    std::string admin;
    {
        auto store = open();
        ASSERT_TRUE(store->add_tenant(tenant("acme")).ok());
        for (int i = 0; i < 3; ++i) {
            auto k = store->create_key("acme", "k" + std::to_string(i));
            ASSERT_TRUE(k.ok());
            secrets.push_back(k->secret);
        }
        auto a = store->create_admin_key();
        ASSERT_TRUE(a.ok());
        admin = *a;
    }
    RawDb raw(path_);
    const auto hashes = raw.column("SELECT hash FROM api_keys ORDER BY id");
    ASSERT_EQ(hashes.size(), secrets.size());
    for (size_t i = 0; i < secrets.size(); ++i) EXPECT_EQ(hashes[i], sha256_bytes(secrets[i].substr(21)));
    EXPECT_EQ(raw.column("SELECT value FROM settings WHERE key = 'admin_key_sha256'"),
              std::vector<std::string>{sha256_bytes(admin)});

    // Neither the database nor its WAL holds any secret, in any form we issued it.
    std::string bytes = read_file(path_);
    if (fs::exists(path_.string() + "-wal")) bytes += read_file(path_.string() + "-wal");
    for (const auto& s : secrets) EXPECT_EQ(bytes.find(s.substr(21)), std::string::npos);
    EXPECT_EQ(bytes.find(admin.substr(10)), std::string::npos);
}

TEST_F(StoreTest, AdminKey) {
    auto store = open();
    EXPECT_EQ(store->check_admin_key("anything at all, long").value(), false);
    EXPECT_FALSE(store->set_admin_key("short").ok());
    ASSERT_TRUE(store->set_admin_key("0123456789abcdef").ok());
    EXPECT_TRUE(store->check_admin_key("0123456789abcdef").value());
    EXPECT_FALSE(store->check_admin_key("0123456789abcdeF").value());
    EXPECT_FALSE(store->check_admin_key("").value());
    auto created = store->create_admin_key();
    ASSERT_TRUE(created.ok());
    EXPECT_TRUE(std::regex_match(*created, std::regex("rlm_admin_[0-9a-f]{64}")));
    EXPECT_TRUE(store->check_admin_key(*created).value());
    EXPECT_FALSE(store->check_admin_key("0123456789abcdef").value());  // replaced
}

TEST_F(StoreTest, TenantRemovalRevokesKeysAndKeepsUsage) {
    auto store = open();
    ASSERT_TRUE(store->add_tenant(tenant("acme")).ok());
    auto k = store->create_key("acme", "ci");
    ASSERT_TRUE(k.ok());
    UsageRecord u;
    u.request_id = "r1";
    u.tenant = "acme";
    u.key_id = k->key.id;
    u.model = "smollm2";
    u.endpoint = "/v1/completions";
    u.prompt_tokens = 5;
    ASSERT_TRUE(store->record_usage(u).ok());

    ASSERT_TRUE(store->remove_tenant("acme").ok());
    EXPECT_EQ(store->authenticate(k->secret)->status, AuthStatus::unknown);
    EXPECT_TRUE(store->list_keys("acme")->empty());
    EXPECT_TRUE(store->list_keys()->empty());
    auto rows = store->usage("acme");
    ASSERT_TRUE(rows.ok());
    ASSERT_EQ(rows->size(), 1u);
    EXPECT_EQ((*rows)[0].key_id, k->key.id);

    // A new tenant of the same name does not inherit the old keys.
    ASSERT_TRUE(store->add_tenant(tenant("acme")).ok());
    EXPECT_EQ(store->authenticate(k->secret)->status, AuthStatus::unknown);
}

TEST_F(StoreTest, GuestModules) {
    auto store = open();
    ASSERT_TRUE(store->add_tenant(tenant("a")).ok());
    ASSERT_TRUE(store->add_tenant(tenant("b")).ok());
    auto none = store->guest_module("a");
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
    EXPECT_FALSE(store->guest_module("nobody").ok());

    const std::vector<uint8_t> mod = {0, 'a', 's', 'm', 1, 0, 0, 0, 0xff, 0};
    auto d = store->register_guest("a", mod);
    ASSERT_TRUE(d.ok()) << d.error().message;
    const std::string raw_digest =
        sha256_bytes(std::string_view(reinterpret_cast<const char*>(mod.data()), mod.size()));
    Sha256 expected{};
    std::memcpy(expected.data(), raw_digest.data(), expected.size());
    EXPECT_EQ(*d, expected);
    EXPECT_EQ(to_hex(*d).size(), 64u);
    EXPECT_EQ(store->get_tenant("a")->guest, *d);
    auto got = store->guest_module("a");
    ASSERT_TRUE(got.ok() && got->has_value());
    EXPECT_EQ(**got, mod);
    ASSERT_TRUE(store->register_guest("b", mod).ok());  // same module, stored once

    RawDb raw(path_);
    EXPECT_EQ(raw.column("SELECT count(*) FROM guests"), std::vector<std::string>{"1"});
    EXPECT_FALSE(store->register_guest("nobody", mod).ok());
    EXPECT_FALSE(store->register_guest("a", {}).ok());

    ASSERT_TRUE(store->clear_guest("a").ok());
    EXPECT_FALSE(store->guest_module("a")->has_value());
    EXPECT_EQ(raw.column("SELECT count(*) FROM guests"), std::vector<std::string>{"1"});  // b still uses it
    ASSERT_TRUE(store->remove_tenant("b").ok());
    EXPECT_EQ(raw.column("SELECT count(*) FROM guests"), std::vector<std::string>{"0"});
    EXPECT_FALSE(store->clear_guest("nobody").ok());
}

TEST_F(StoreTest, UsageSurvivesReopenWithTotals) {
    {
        auto store = open();
        for (int i = 0; i < 5; ++i) {
            UsageRecord u;
            u.request_id = "req-" + std::to_string(i);
            u.tenant = i < 3 ? "acme" : "other";
            u.model = "smollm2";
            u.endpoint = "/v1/chat/completions";
            u.prompt_tokens = 10;
            u.completion_tokens = static_cast<uint64_t>(i);
            u.latency_ms = 100;
            u.status = i == 1 ? 429 : 200;
            if (i == 1) {
                u.error_kind = "rate_limited";
                u.error_message = "requests_per_minute";
            }
            auto id = store->record_usage(u);
            ASSERT_TRUE(id.ok()) << id.error().message;
        }
    }
    auto store = open();
    auto all = store->usage(std::nullopt, 100);
    ASSERT_TRUE(all.ok());
    ASSERT_EQ(all->size(), 5u);
    EXPECT_EQ((*all)[0].request_id, "req-4");  // newest first
    auto acme = store->usage("acme", 2);
    ASSERT_TRUE(acme.ok());
    ASSERT_EQ(acme->size(), 2u);
    EXPECT_EQ((*acme)[0].request_id, "req-2");
    EXPECT_EQ((*acme)[1].request_id, "req-1");
    EXPECT_EQ((*acme)[1].status, 429);
    EXPECT_EQ((*acme)[1].error_kind, "rate_limited");
    EXPECT_GT((*acme)[1].created_at, 0);
    EXPECT_FALSE((*acme)[1].key_id.has_value());

    auto t = store->usage_totals("acme");
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->requests, 3u);
    EXPECT_EQ(t->errors, 1u);
    EXPECT_EQ(t->prompt_tokens, 30u);
    EXPECT_EQ(t->completion_tokens, 0u + 1u + 2u);
    auto empty = store->usage_totals("nobody");
    ASSERT_TRUE(empty.ok());
    EXPECT_EQ(empty->requests, 0u);
}

TEST_F(StoreTest, ConcurrentRecordUsage) {
    auto store = open();
    constexpr int kThreads = 8, kPerThread = 40;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    std::vector<std::vector<int64_t>> ids(kThreads);
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                UsageRecord u;
                u.request_id = std::to_string(t) + "-" + std::to_string(i);
                u.tenant = "t" + std::to_string(t % 2);
                u.model = "m";
                u.endpoint = "/v1/completions";
                u.completion_tokens = 1;
                auto id = store->record_usage(u);
                if (!id.ok()) ++failures;
                else ids[t].push_back(*id);
                // Reads interleave with the writes.
                if (i % 10 == 0 && !store->usage_totals("t0").ok()) ++failures;
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    std::set<int64_t> unique;
    for (const auto& v : ids) unique.insert(v.begin(), v.end());
    EXPECT_EQ(unique.size(), static_cast<size_t>(kThreads * kPerThread));
    const auto t0 = store->usage_totals("t0");
    const auto t1 = store->usage_totals("t1");
    ASSERT_TRUE(t0.ok() && t1.ok());
    EXPECT_EQ(t0->requests + t1->requests, static_cast<uint64_t>(kThreads * kPerThread));
    EXPECT_EQ(t0->completion_tokens, static_cast<uint64_t>(kThreads / 2 * kPerThread));
}

TEST_F(StoreTest, SqlErrorsNameTheOperation) {
    auto store = open();
    {
        RawDb raw(path_);
        raw.exec("DROP TABLE usage");
    }
    UsageRecord u;
    u.tenant = "acme";
    auto r = store->record_usage(u);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("store: record_usage:"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("usage"), std::string::npos);
}

TEST_F(StoreTest, UsageRowSurvivesAProcessThatDiesWithoutClosing) {
    { auto created = open(); }
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        // Child: record one row and die at once — no destructors, no WAL checkpoint, no close.
        auto store = Store::open(path_);
        if (!store.ok()) ::_exit(2);
        UsageRecord u;
        u.request_id = "before-crash";
        u.tenant = "acme";
        ::_exit((*store)->record_usage(u).ok() ? 0 : 3);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    auto store = open();
    auto rows = store->usage("acme");
    ASSERT_TRUE(rows.ok());
    ASSERT_EQ(rows->size(), 1u);
    EXPECT_EQ((*rows)[0].request_id, "before-crash");
}
