// `realm tenant|key|usage` and `realm guest register`: admin commands over the server's SQLite store.
#include "cli/admin.hpp"

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>

#include "sandbox/engine_backend.hpp"
#include "server/admin.hpp"
#include "sandbox/sandbox.hpp"

namespace realm::cli {
namespace {

constexpr uint64_t kMaxGuestFile = 64ull << 20;  // far above any real guest; keeps the database sane

int fail(const std::string& cmd, const std::string& msg, int code = 1) {
    std::fprintf(stderr, "realm %s: %s\n", cmd.c_str(), msg.c_str());
    return code;
}

std::string iso_time(int64_t unix_seconds) {
    const auto t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    if (!gmtime_r(&t, &tm)) return std::to_string(unix_seconds);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::string opt_time(const std::optional<int64_t>& t) { return t ? iso_time(*t) : "-"; }


std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
    return out;
}

// The tenant flags of `add` and `set`; for `set` only the flags given change the tenant.
struct TenantFlags {
    std::string models;
    uint32_t rpm = 0, concurrency = 0, max_tokens = 0, guest_time_ms = 0;
    uint64_t tpm = 0, guest_memory_mb = 0;
    std::vector<CLI::Option*> options;

    void add_to(CLI::App* app) {
        options = {
            app->add_option("--models", models, "Allowed models, comma-separated, or * for all"),
            app->add_option("--rpm", rpm, "Requests per minute (0 = unlimited)"),
            app->add_option("--tpm", tpm, "Prompt + completion tokens per minute (0 = unlimited)"),
            app->add_option("--concurrency", concurrency, "Concurrent requests (0 = unlimited)"),
            app->add_option("--max-tokens", max_tokens, "Cap on a request's max_tokens (0 = unlimited)"),
            app->add_option("--guest-memory-mb", guest_memory_mb, "Guest memory budget in MiB (1..4096)"),
            app->add_option("--guest-time-ms", guest_time_ms, "Guest time budget per request in ms (> 0)"),
        };
    }
    bool any() const {
        for (const auto* o : options)
            if (o->count() > 0) return true;
        return false;
    }
    bool given(size_t i) const { return options[i]->count() > 0; }

    // Applies the given flags; a usage error names the flag.
    Result<bool> apply(server::Tenant& t) const {
        if (given(0)) {
            t.models.clear();
            std::string_view rest = models;
            for (;;) {
                const size_t comma = rest.find(',');
                std::string_view item = rest.substr(0, comma);
                while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
                while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
                if (item.empty()) return make_error("--models: empty model name in '" + models + "'");
                t.models.emplace_back(item);
                if (comma == std::string_view::npos) break;
                rest.remove_prefix(comma + 1);
            }
        }
        if (given(1)) t.limits.requests_per_minute = rpm;
        if (given(2)) t.limits.tokens_per_minute = tpm;
        if (given(3)) t.limits.max_concurrent = concurrency;
        if (given(4)) t.limits.max_tokens_per_request = max_tokens;
        if (given(5)) {
            if (guest_memory_mb == 0 || guest_memory_mb > 4096) return make_error("--guest-memory-mb must be 1..4096");
            t.limits.guest_memory_bytes = guest_memory_mb << 20;
        }
        if (given(6)) {
            if (guest_time_ms == 0) return make_error("--guest-time-ms must be > 0");
            t.limits.guest_time_ms = guest_time_ms;
        }
        return true;
    }
};

void print_tenants(const std::vector<server::Tenant>& ts) {
    std::printf("%-24s %-24s %6s %8s %5s %8s %9s %9s %-12s %s\n", "NAME", "MODELS", "RPM", "TPM", "CONC", "MAXTOK",
                "GUEST_MB", "GUEST_MS", "GUEST", "CREATED");
    for (const auto& t : ts) {
        const auto& l = t.limits;
        const std::string guest = t.guest ? server::to_hex(*t.guest).substr(0, 12) : "default";
        std::printf("%-24s %-24s %6u %8llu %5u %8u %9llu %9u %-12s %s\n", t.name.c_str(), join(t.models).c_str(),
                    l.requests_per_minute, static_cast<unsigned long long>(l.tokens_per_minute), l.max_concurrent,
                    l.max_tokens_per_request, static_cast<unsigned long long>(l.guest_memory_bytes >> 20),
                    l.guest_time_ms, guest.c_str(), iso_time(t.created_at).c_str());
    }
}

std::string dump(const nlohmann::json& j) {
    // Names and messages in the store may hold arbitrary bytes (usage rows come from requests).
    return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

Result<std::filesystem::path> default_db_path() {
    if (const char* d = std::getenv("REALM_DATA_DIR"); d && *d) return std::filesystem::path(d) / "realm.db";
    const char* home = std::getenv("HOME");
    if (!home || !*home) return make_error("neither REALM_DATA_DIR nor HOME is set: pass --db PATH");
    return std::filesystem::path(home) / ".local" / "share" / "realm" / "realm.db";
}

Result<std::unique_ptr<server::Store>> open_store(const std::filesystem::path& given) {
    std::filesystem::path path = given;
    if (path.empty()) {
        auto def = default_db_path();
        if (!def) return def.error();
        path = *def;
    }
    if (path.has_parent_path()) {
        std::error_code ec;
        std::filesystem::create_directories(path.parent_path(), ec);
        if (ec) return make_error("cannot create " + path.parent_path().string() + ": " + ec.message());
    }
    return server::Store::open(path);
}

struct AdminCommands::State {
    std::string db;
    std::string name, label, file;
    std::string filter;  // optional TENANT argument of `key list` / `usage`
    int64_t key_id = 0;
    uint32_t limit = 50;
    bool json = false;
    TenantFlags add_flags, set_flags;

    CLI::App* tenant_add = nullptr;
    CLI::App* tenant_list = nullptr;
    CLI::App* tenant_remove = nullptr;
    CLI::App* tenant_set = nullptr;
    CLI::App* key_create = nullptr;
    CLI::App* key_list = nullptr;
    CLI::App* key_revoke = nullptr;
    CLI::App* guest_register = nullptr;
    CLI::App* usage = nullptr;
    CLI::Option* filter_opt_keys = nullptr;
    CLI::Option* filter_opt_usage = nullptr;

    CLI::App* leaf(CLI::App* parent, const std::string& name, const std::string& help) {
        auto* app = parent->add_subcommand(name, help);
        app->add_option("--db", db, "SQLite database (default: $REALM_DATA_DIR/realm.db, else "
                                    "~/.local/share/realm/realm.db)");
        return app;
    }

    int tenant_add_cmd(server::Store& store) const;
    int tenant_set_cmd(server::Store& store) const;
    int guest_register_cmd(server::Store& store) const;
    int usage_cmd(server::Store& store) const;
};

AdminCommands::AdminCommands(CLI::App& app, CLI::App& guest) : s_(std::make_unique<State>()) {
    State& s = *s_;
    auto* tenant = app.add_subcommand("tenant", "Manage tenants (in the server's SQLite database)");
    tenant->require_subcommand(1);
    s.tenant_add = s.leaf(tenant, "add", "Add a tenant");
    s.tenant_add->add_option("NAME", s.name, "Tenant name ([A-Za-z0-9_.-]{1,64})")->required();
    s.add_flags.add_to(s.tenant_add);
    s.tenant_list = s.leaf(tenant, "list", "List tenants");
    s.tenant_list->add_flag("--json", s.json, "Machine-readable output");
    s.tenant_remove = s.leaf(tenant, "remove", "Remove a tenant and its API keys (usage rows stay)");
    s.tenant_remove->add_option("NAME", s.name)->required();
    s.tenant_set = s.leaf(tenant, "set", "Change a tenant's models or limits");
    s.tenant_set->add_option("NAME", s.name)->required();
    s.set_flags.add_to(s.tenant_set);

    auto* key = app.add_subcommand("key", "Manage API keys");
    key->require_subcommand(1);
    s.key_create = s.leaf(key, "create", "Create an API key; it is printed once and cannot be shown again");
    s.key_create->add_option("TENANT", s.name)->required();
    s.key_create->add_option("--label", s.label, "A note to recognise the key by");
    s.key_list = s.leaf(key, "list", "List API keys (never their secrets)");
    s.filter_opt_keys = s.key_list->add_option("TENANT", s.filter, "Only this tenant's keys");
    s.key_list->add_flag("--json", s.json, "Machine-readable output");
    s.key_revoke = s.leaf(key, "revoke", "Revoke an API key");
    s.key_revoke->add_option("ID", s.key_id, "Key id (see `realm key list`)")->required();

    s.guest_register = s.leaf(&guest, "register", "Validate a guest module and make it a tenant's guest");
    s.guest_register->add_option("TENANT", s.name)->required();
    s.guest_register->add_option("FILE", s.file, "Guest module (.wasm)")->required();

    s.usage = s.leaf(&app, "usage", "Show recent requests (usage rows) and, for one tenant, totals");
    s.filter_opt_usage = s.usage->add_option("TENANT", s.filter, "Only this tenant's rows");
    s.usage->add_option("--limit", s.limit, "Rows to show (newest first)")->capture_default_str();
    s.usage->add_flag("--json", s.json, "Machine-readable output");
}

AdminCommands::~AdminCommands() = default;

bool AdminCommands::parsed() const {
    for (const auto* a : {s_->tenant_add, s_->tenant_list, s_->tenant_remove, s_->tenant_set, s_->key_create,
                          s_->key_list, s_->key_revoke, s_->guest_register, s_->usage})
        if (a->parsed()) return true;
    return false;
}

int AdminCommands::State::tenant_add_cmd(server::Store& store) const {
    server::Tenant t;
    t.name = name;
    t.models = {"*"};
    if (auto r = add_flags.apply(t); !r) return fail("tenant add", r.error().message, 2);
    auto added = store.add_tenant(t);
    if (!added) return fail("tenant add", added.error().message);
    std::printf("added tenant %s\n", added->name.c_str());
    return 0;
}

int AdminCommands::State::tenant_set_cmd(server::Store& store) const {
    if (!set_flags.any()) return fail("tenant set", "nothing to change: give at least one flag (see --help)", 2);
    auto t = store.get_tenant(name);
    if (!t) return fail("tenant set", t.error().message);
    if (auto r = set_flags.apply(*t); !r) return fail("tenant set", r.error().message, 2);
    if (auto r = store.update_tenant(*t); !r) return fail("tenant set", r.error().message);
    std::printf("updated tenant %s\n", t->name.c_str());
    return 0;
}

int AdminCommands::State::guest_register_cmd(server::Store& store) const {
    const std::string cmd = "guest register";
    // The tenant is checked first so a typo does not cost a module compilation.
    if (auto t = store.get_tenant(name); !t) return fail(cmd, t.error().message);
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec)) return fail(cmd, "'" + file + "' is a directory");
    std::ifstream in(file, std::ios::binary);
    if (!in) return fail(cmd, "cannot read '" + file + "'");
    std::vector<uint8_t> bytes;
    const auto size = std::filesystem::file_size(file, ec);
    if (ec) return fail(cmd, "cannot read '" + file + "': " + ec.message());
    if (size > kMaxGuestFile) return fail(cmd, "'" + file + "' is larger than 64 MiB");
    bytes.resize(size);
    if (!in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size())))
        return fail(cmd, "cannot read '" + file + "'");

    // Validation is the sandbox's: compile and link-check the module exactly as the server will, against a
    // backend with no models (nothing runs).
    sandbox::EngineConfig cfg;
    cfg.pooling = false;
    cfg.max_instances = 1;
    auto sb = sandbox::Sandbox::create(cfg, std::make_shared<sandbox::EngineBackend>());
    if (!sb) return fail(cmd, sb.error().message);
    auto mod = (*sb)->load(bytes);
    if (!mod) return fail(cmd, "invalid guest module '" + file + "': " + mod.error().message);

    auto digest = store.register_guest(name, bytes);
    if (!digest) return fail(cmd, digest.error().message);
    std::printf("registered guest %s (%zu bytes) for tenant %s\n", server::to_hex(*digest).c_str(), bytes.size(),
                name.c_str());
    return 0;
}

int AdminCommands::State::usage_cmd(server::Store& store) const {
    std::optional<std::string_view> tenant;
    if (filter_opt_usage->count() > 0) tenant = filter;
    auto rows = store.usage(tenant, limit);
    if (!rows) return fail("usage", rows.error().message);
    std::optional<server::UsageTotals> totals;
    if (tenant) {
        auto t = store.usage_totals(*tenant);
        if (!t) return fail("usage", t.error().message);
        totals = *t;
    }
    if (json) {
        nlohmann::json out = {{"rows", nlohmann::json::array()}};
        for (const auto& u : *rows) out["rows"].push_back(server::usage_json(u));
        if (totals)
            out["totals"] = {{"tenant", *tenant},
                             {"requests", totals->requests},
                             {"errors", totals->errors},
                             {"prompt_tokens", totals->prompt_tokens},
                             {"completion_tokens", totals->completion_tokens}};
        std::printf("%s\n", dump(out).c_str());
        return 0;
    }
    std::printf("%-20s %-16s %-24s %-22s %6s %8s %8s %9s %s\n", "TIME", "TENANT", "MODEL", "ENDPOINT", "STATUS",
                "PROMPT", "COMPL", "LATENCY", "ERROR");
    for (const auto& u : *rows)
        std::printf("%-20s %-16s %-24s %-22s %6d %8llu %8llu %7llums %s\n", iso_time(u.created_at).c_str(),
                    u.tenant.c_str(), u.model.c_str(), u.endpoint.c_str(), u.status,
                    static_cast<unsigned long long>(u.prompt_tokens),
                    static_cast<unsigned long long>(u.completion_tokens),
                    static_cast<unsigned long long>(u.latency_ms), u.error_kind.c_str());
    if (totals)
        std::printf("total for %s: %llu requests (%llu errors), %llu prompt + %llu completion tokens\n",
                    filter.c_str(), static_cast<unsigned long long>(totals->requests),
                    static_cast<unsigned long long>(totals->errors),
                    static_cast<unsigned long long>(totals->prompt_tokens),
                    static_cast<unsigned long long>(totals->completion_tokens));
    return 0;
}

int AdminCommands::run() const {
    const State& s = *s_;
    const char* cmd = s.tenant_add->parsed()       ? "tenant add"
                      : s.tenant_list->parsed()    ? "tenant list"
                      : s.tenant_remove->parsed()  ? "tenant remove"
                      : s.tenant_set->parsed()     ? "tenant set"
                      : s.key_create->parsed()     ? "key create"
                      : s.key_list->parsed()       ? "key list"
                      : s.key_revoke->parsed()     ? "key revoke"
                      : s.guest_register->parsed() ? "guest register"
                                                   : "usage";
    auto opened = open_store(s.db);
    if (!opened) return fail(cmd, opened.error().message);
    server::Store& store = **opened;

    if (s.tenant_add->parsed()) return s.tenant_add_cmd(store);
    if (s.tenant_set->parsed()) return s.tenant_set_cmd(store);
    if (s.guest_register->parsed()) return s.guest_register_cmd(store);
    if (s.usage->parsed()) return s.usage_cmd(store);

    if (s.tenant_list->parsed()) {
        auto ts = store.list_tenants();
        if (!ts) return fail(cmd, ts.error().message);
        if (s.json) {
            nlohmann::json out = nlohmann::json::array();
            for (const auto& t : *ts) out.push_back(server::tenant_json(t));
            std::printf("%s\n", dump(out).c_str());
        } else {
            print_tenants(*ts);
        }
        return 0;
    }
    if (s.tenant_remove->parsed()) {
        if (auto r = store.remove_tenant(s.name); !r) return fail(cmd, r.error().message);
        std::printf("removed tenant %s (its API keys are deleted)\n", s.name.c_str());
        return 0;
    }
    if (s.key_create->parsed()) {
        auto k = store.create_key(s.name, s.label);
        if (!k) return fail(cmd, k.error().message);
        // The key alone on stdout (scripts capture it); the note on stderr.
        std::printf("%s\n", k->secret.c_str());
        std::fflush(stdout);
        std::fprintf(stderr, "created key %lld (prefix %s) for tenant %s; store it now: it cannot be shown again\n",
                     static_cast<long long>(k->key.id), k->key.prefix.c_str(), k->key.tenant.c_str());
        return 0;
    }
    if (s.key_list->parsed()) {
        std::optional<std::string_view> tenant;
        if (s.filter_opt_keys->count() > 0) tenant = s.filter;
        auto keys = store.list_keys(tenant);
        if (!keys) return fail(cmd, keys.error().message);
        if (s.json) {
            nlohmann::json out = nlohmann::json::array();
            for (const auto& k : *keys) out.push_back(server::key_json(k));
            std::printf("%s\n", dump(out).c_str());
            return 0;
        }
        std::printf("%-6s %-24s %-16s %-18s %-20s %-20s %s\n", "ID", "TENANT", "LABEL", "PREFIX", "CREATED",
                    "LAST_USED", "STATUS");
        for (const auto& k : *keys)
            std::printf("%-6lld %-24s %-16s %-18s %-20s %-20s %s\n", static_cast<long long>(k.id), k.tenant.c_str(),
                        k.label.c_str(), k.prefix.c_str(), iso_time(k.created_at).c_str(),
                        opt_time(k.last_used_at).c_str(),
                        k.revoked_at ? ("revoked " + iso_time(*k.revoked_at)).c_str() : "active");
        return 0;
    }
    if (s.key_revoke->parsed()) {
        if (auto r = store.revoke_key(s.key_id); !r) return fail(cmd, r.error().message);
        std::printf("revoked key %lld\n", static_cast<long long>(s.key_id));
        return 0;
    }
    return 1;
}

}  // namespace realm::cli
