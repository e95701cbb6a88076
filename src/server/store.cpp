#include "server/store.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include <chrono>
#include <limits>
#include <mutex>

namespace realm::server {
namespace {

constexpr int kSchemaVersion = 1;
constexpr std::string_view kKeyTag = "rlm_";
constexpr size_t kPrefixHex = 16;  // 8 random bytes: the public id, unique per key
constexpr size_t kSecretHex = 64;  // 32 random bytes
constexpr size_t kKeyLen = kKeyTag.size() + kPrefixHex + 1 + kSecretHex;
constexpr std::string_view kAdminSetting = "admin_key_sha256";
// last_used_at is refreshed at most this often, so that authenticating stays a read (no fsync) per request.
constexpr int64_t kLastUsedGranularity = 60;

constexpr const char* kSchema = R"sql(
CREATE TABLE guests (
  sha256 BLOB PRIMARY KEY CHECK (length(sha256) = 32),
  module BLOB NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE tenants (
  name TEXT PRIMARY KEY,
  models TEXT NOT NULL,
  guest BLOB REFERENCES guests(sha256),
  requests_per_minute INTEGER NOT NULL,
  tokens_per_minute INTEGER NOT NULL,
  max_concurrent INTEGER NOT NULL,
  max_tokens_per_request INTEGER NOT NULL,
  guest_memory_bytes INTEGER NOT NULL,
  guest_time_ms INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE api_keys (
  id INTEGER PRIMARY KEY,
  tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
  label TEXT NOT NULL,
  prefix TEXT NOT NULL UNIQUE,
  hash BLOB NOT NULL CHECK (length(hash) = 32),
  created_at INTEGER NOT NULL,
  revoked_at INTEGER,
  last_used_at INTEGER
);
CREATE INDEX api_keys_tenant ON api_keys(tenant);
CREATE TABLE usage (
  id INTEGER PRIMARY KEY,
  request_id TEXT NOT NULL,
  tenant TEXT NOT NULL,
  key_id INTEGER,
  model TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  latency_ms INTEGER NOT NULL,
  status INTEGER NOT NULL,
  error_kind TEXT NOT NULL,
  error_message TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX usage_tenant ON usage(tenant, id);
CREATE TABLE settings (
  key TEXT PRIMARY KEY,
  value BLOB NOT NULL
);
)sql";

int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

Sha256 sha256(std::span<const uint8_t> data) {
    Sha256 out{};
    unsigned int len = 0;
    // EVP_Digest with SHA-256 cannot fail short of memory exhaustion; `out` stays zero then, which matches
    // no stored hash.
    EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
    return out;
}

Sha256 sha256(std::string_view s) {
    return sha256(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

std::string hex(std::span<const uint8_t> bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (uint8_t b : bytes) {
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 15]);
    }
    return out;
}

bool is_lower_hex(std::string_view s) {
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

Result<std::string> random_hex(size_t n_bytes) {
    std::vector<uint8_t> buf(n_bytes);
    if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1)
        return make_error("store: the system random generator failed");
    return hex(buf);
}

bool valid_model_name(std::string_view m) {
    if (m == "*") return true;
    if (m.empty() || m.size() > 128) return false;
    for (char c : m) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                        c == '_' || c == '.' || c == '-' || c == ':' || c == '/' || c == '@' || c == '+';
        if (!ok) return false;
    }
    return true;
}

std::string shown(std::string_view s) {
    // Names in error messages may be arbitrary bytes from a request or the command line.
    std::string out = "'";
    for (char c : s.substr(0, 80)) out.push_back(static_cast<unsigned char>(c) < 0x20 ? '?' : c);
    if (s.size() > 80) out += "...";
    return out + "'";
}

constexpr uint64_t kMaxInt64 = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

Status validate(const Tenant& t) {
    if (!valid_tenant_name(t.name))
        return make_error("invalid tenant name " + shown(t.name) + " (expected [A-Za-z0-9_.-]{1,64})");
    for (const auto& m : t.models)
        if (!valid_model_name(m))
            return make_error("invalid model name " + shown(m) + " (expected [A-Za-z0-9_.:/@+-]{1,128} or *)");
    const Limits& l = t.limits;
    if (l.tokens_per_minute > kMaxInt64) return make_error("tokens_per_minute is too large");
    if (l.guest_memory_bytes == 0 || l.guest_memory_bytes > (4ull << 30))
        return make_error("guest memory must be between 1 byte and 4 GiB (the wasm32 address space)");
    if (l.guest_time_ms == 0) return make_error("the guest time budget must be > 0 ms");
    return {};
}

std::string join_models(const std::vector<std::string>& models) {
    std::string out;
    for (const auto& m : models) {
        if (!out.empty()) out.push_back(',');
        out += m;
    }
    return out;
}

std::vector<std::string> split_models(std::string_view s) {
    std::vector<std::string> out;
    while (!s.empty()) {
        const size_t comma = s.find(',');
        out.emplace_back(s.substr(0, comma));
        if (comma == std::string_view::npos) break;
        s.remove_prefix(comma + 1);
    }
    return out;
}

struct DbClose {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalize {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};

Error sql_error(sqlite3* db, std::string_view op) {
    return make_error("store: " + std::string(op) + ": " + sqlite3_errmsg(db));
}

// One prepared statement. Binding errors are remembered and reported by the next step().
class Stmt {
public:
    static Result<Stmt> prepare(sqlite3* db, std::string_view sql, std::string_view op) {
        sqlite3_stmt* raw = nullptr;
        if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr) != SQLITE_OK) {
            sqlite3_finalize(raw);
            return sql_error(db, op);
        }
        return Stmt(db, raw, op);
    }

    Stmt& bind(int i, int64_t v) { return check(sqlite3_bind_int64(s_.get(), i, v)); }
    Stmt& bind(int i, std::string_view v) {
        return check(sqlite3_bind_text64(s_.get(), i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    }
    Stmt& bind_blob(int i, std::span<const uint8_t> v) {
        return check(sqlite3_bind_blob64(s_.get(), i, v.data(), v.size(), SQLITE_TRANSIENT));
    }
    Stmt& bind_null(int i) { return check(sqlite3_bind_null(s_.get(), i)); }

    // true: a row is available; false: done.
    Result<bool> step() {
        if (bind_rc_ != SQLITE_OK) return make_error("store: " + op_ + ": " + sqlite3_errstr(bind_rc_));
        const int rc = sqlite3_step(s_.get());
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        return sql_error(db_, op_);
    }
    // For statements that return no rows.
    Status run() {
        auto r = step();
        if (!r) return r.error();
        return {};
    }

    bool is_null(int col) const { return sqlite3_column_type(s_.get(), col) == SQLITE_NULL; }
    int64_t int64(int col) const { return sqlite3_column_int64(s_.get(), col); }
    uint64_t uint(int col) const {
        const int64_t v = int64(col);
        return v < 0 ? 0 : static_cast<uint64_t>(v);
    }
    std::optional<int64_t> opt_int64(int col) const {
        if (is_null(col)) return std::nullopt;
        return int64(col);
    }
    std::string text(int col) const {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_.get(), col));
        return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_.get(), col))) : std::string();
    }
    std::vector<uint8_t> blob(int col) const {
        const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s_.get(), col));
        const auto n = static_cast<size_t>(sqlite3_column_bytes(s_.get(), col));
        return p ? std::vector<uint8_t>(p, p + n) : std::vector<uint8_t>();
    }

private:
    Stmt(sqlite3* db, sqlite3_stmt* s, std::string_view op) : db_(db), s_(s), op_(op) {}
    Stmt& check(int rc) {
        if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
        return *this;
    }

    sqlite3* db_;
    std::unique_ptr<sqlite3_stmt, StmtFinalize> s_;
    std::string op_;
    int bind_rc_ = SQLITE_OK;
};

Status exec(sqlite3* db, const char* sql, std::string_view op) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return sql_error(db, op);
    return {};
}

// BEGIN IMMEDIATE (takes the write lock up front, so a concurrent writer waits on the busy timeout instead
// of failing mid-transaction); rolls back unless committed.
class Transaction {
public:
    Transaction(sqlite3* db, std::string_view op) : db_(db), op_(op) {}
    ~Transaction() {
        if (active_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    Status begin() {
        if (auto s = exec(db_, "BEGIN IMMEDIATE", op_); !s) return s;
        active_ = true;
        return {};
    }
    Status commit() {
        if (auto s = exec(db_, "COMMIT", op_); !s) return s;
        active_ = false;
        return {};
    }

private:
    sqlite3* db_;
    std::string op_;
    bool active_ = false;
};

constexpr const char* kTenantColumns =
    "name, models, guest, requests_per_minute, tokens_per_minute, max_concurrent, max_tokens_per_request, "
    "guest_memory_bytes, guest_time_ms, created_at";

Tenant read_tenant(const Stmt& s) {
    Tenant t;
    t.name = s.text(0);
    t.models = split_models(s.text(1));
    if (!s.is_null(2)) {
        const auto g = s.blob(2);
        if (g.size() == 32) {
            Sha256 d{};
            std::copy(g.begin(), g.end(), d.begin());
            t.guest = d;
        }
    }
    t.limits.requests_per_minute = static_cast<uint32_t>(s.uint(3));
    t.limits.tokens_per_minute = s.uint(4);
    t.limits.max_concurrent = static_cast<uint32_t>(s.uint(5));
    t.limits.max_tokens_per_request = static_cast<uint32_t>(s.uint(6));
    t.limits.guest_memory_bytes = s.uint(7);
    t.limits.guest_time_ms = static_cast<uint32_t>(s.uint(8));
    t.created_at = s.int64(9);
    return t;
}

constexpr const char* kKeyColumns = "id, tenant, label, prefix, created_at, revoked_at, last_used_at";

ApiKey read_key(const Stmt& s) {
    ApiKey k;
    k.id = s.int64(0);
    k.tenant = s.text(1);
    k.label = s.text(2);
    k.prefix = s.text(3);
    k.created_at = s.int64(4);
    k.revoked_at = s.opt_int64(5);
    k.last_used_at = s.opt_int64(6);
    return k;
}

Error unknown_tenant(std::string_view name) { return make_error("unknown tenant " + shown(name)); }

}  // namespace

std::string to_hex(const Sha256& digest) { return hex(digest); }

bool valid_tenant_name(std::string_view name) {
    if (name.empty() || name.size() > 64) return false;
    for (char c : name) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                        c == '.' || c == '-';
        if (!ok) return false;
    }
    return true;
}

bool Tenant::allows_model(std::string_view model) const {
    for (const auto& m : models)
        if (m == "*" || m == model) return true;
    return false;
}

std::string_view to_string(AuthStatus s) {
    switch (s) {
        case AuthStatus::ok: return "ok";
        case AuthStatus::malformed: return "malformed";
        case AuthStatus::unknown: return "unknown";
        case AuthStatus::revoked: return "revoked";
    }
    return "unknown";
}

struct Store::Impl {
    std::mutex mu;
    std::unique_ptr<sqlite3, DbClose> db;

    sqlite3* h() { return db.get(); }

    Result<bool> tenant_exists(std::string_view name, std::string_view op) {
        auto s = Stmt::prepare(h(), "SELECT 1 FROM tenants WHERE name = ?1", op);
        if (!s) return s.error();
        s->bind(1, name);
        return s->step();
    }

    // Guest modules no tenant points at any more are deleted (they can be large).
    Status collect_guests(std::string_view op) {
        return exec(h(), "DELETE FROM guests WHERE sha256 NOT IN (SELECT guest FROM tenants WHERE guest IS NOT NULL)",
                    op);
    }
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::open(const std::filesystem::path& path) {
    const std::string op = "open " + path.string();
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                   nullptr);
    std::unique_ptr<sqlite3, DbClose> db(raw);
    if (rc != SQLITE_OK) {
        if (!db) return make_error("store: " + op + ": " + sqlite3_errstr(rc));
        return sql_error(db.get(), op);
    }
    // The server and the admin CLI may use the file at the same time: wait for each other's locks.
    sqlite3_busy_timeout(db.get(), 5000);
    sqlite3_extended_result_codes(db.get(), 1);

    {
        auto s = Stmt::prepare(db.get(), "PRAGMA journal_mode=WAL", op);
        if (!s) return s.error();
        auto row = s->step();
        if (!row) return row.error();
        if (!*row || s->text(0) != "wal")
            return make_error("store: " + op + ": cannot switch the database to WAL mode");
    }
    // FULL: a committed transaction (e.g. a usage row) survives a power loss, not just a process crash.
    if (auto s = exec(db.get(), "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", op); !s) return s.error();

    // Two processes may open a fresh file at once: the version is read and the schema created under the
    // write lock.
    Transaction tx(db.get(), op);
    if (auto s = tx.begin(); !s) return s.error();
    int version = 0;
    {
        auto s = Stmt::prepare(db.get(), "PRAGMA user_version", op);
        if (!s) return s.error();
        auto row = s->step();
        if (!row) return row.error();
        version = *row ? static_cast<int>(s->int64(0)) : 0;
    }
    if (version > kSchemaVersion)
        return make_error("store: " + op + ": schema version " + std::to_string(version) +
                          " is newer than this build supports (" + std::to_string(kSchemaVersion) + ")");
    if (version == 0) {
        if (auto s = exec(db.get(), kSchema, op); !s) return s.error();
        const std::string set_version = "PRAGMA user_version=" + std::to_string(kSchemaVersion);
        if (auto s = exec(db.get(), set_version.c_str(), op); !s) return s.error();
    }
    if (auto s = tx.commit(); !s) return s.error();

    auto impl = std::make_unique<Impl>();
    impl->db = std::move(db);
    return std::make_unique<Store>(std::move(impl));
}

// --- Tenants -------------------------------------------------------------------------------------------------

namespace {
// ?1 name, ?2 models, ?3..?8 the limits: the parameters INSERT and UPDATE of a tenant share.
Stmt& bind_tenant(Stmt& s, const Tenant& t) {
    const Limits& l = t.limits;
    return s.bind(1, t.name)
        .bind(2, join_models(t.models))
        .bind(3, int64_t{l.requests_per_minute})
        .bind(4, static_cast<int64_t>(l.tokens_per_minute))
        .bind(5, int64_t{l.max_concurrent})
        .bind(6, int64_t{l.max_tokens_per_request})
        .bind(7, static_cast<int64_t>(l.guest_memory_bytes))
        .bind(8, int64_t{l.guest_time_ms});
}
}  // namespace

Result<Tenant> Store::add_tenant(const Tenant& t) {
    if (auto v = validate(t); !v) return v.error();
    std::lock_guard lock(impl_->mu);
    const char* op = "add_tenant";
    auto exists = impl_->tenant_exists(t.name, op);
    if (!exists) return exists.error();
    if (*exists) return make_error("tenant " + shown(t.name) + " already exists");
    auto s = Stmt::prepare(impl_->h(),
                           "INSERT INTO tenants (name, models, guest, requests_per_minute, tokens_per_minute, "
                           "max_concurrent, max_tokens_per_request, guest_memory_bytes, guest_time_ms, created_at) "
                           "VALUES (?1, ?2, NULL, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                           op);
    if (!s) return s.error();
    Tenant stored = t;
    stored.guest.reset();
    stored.created_at = unix_now();
    bind_tenant(*s, t).bind(9, stored.created_at);
    if (auto r = s->run(); !r) return r.error();
    return stored;
}

Result<Tenant> Store::get_tenant(std::string_view name) {
    std::lock_guard lock(impl_->mu);
    auto s = Stmt::prepare(impl_->h(), std::string("SELECT ") + kTenantColumns + " FROM tenants WHERE name = ?1",
                           "get_tenant");
    if (!s) return s.error();
    s->bind(1, name);
    auto row = s->step();
    if (!row) return row.error();
    if (!*row) return unknown_tenant(name);
    return read_tenant(*s);
}

Result<std::vector<Tenant>> Store::list_tenants() {
    std::lock_guard lock(impl_->mu);
    auto s = Stmt::prepare(impl_->h(), std::string("SELECT ") + kTenantColumns + " FROM tenants ORDER BY name",
                           "list_tenants");
    if (!s) return s.error();
    std::vector<Tenant> out;
    for (;;) {
        auto row = s->step();
        if (!row) return row.error();
        if (!*row) break;
        out.push_back(read_tenant(*s));
    }
    return out;
}

Status Store::update_tenant(const Tenant& t) {
    if (auto v = validate(t); !v) return v;
    std::lock_guard lock(impl_->mu);
    auto s = Stmt::prepare(impl_->h(),
                           "UPDATE tenants SET models = ?2, requests_per_minute = ?3, tokens_per_minute = ?4, "
                           "max_concurrent = ?5, max_tokens_per_request = ?6, guest_memory_bytes = ?7, "
                           "guest_time_ms = ?8 WHERE name = ?1",
                           "update_tenant");
    if (!s) return s.error();
    bind_tenant(*s, t);
    if (auto r = s->run(); !r) return r;
    if (sqlite3_changes(impl_->h()) == 0) return unknown_tenant(t.name);
    return {};
}

Status Store::remove_tenant(std::string_view name) {
    std::lock_guard lock(impl_->mu);
    const char* op = "remove_tenant";
    Transaction tx(impl_->h(), op);
    if (auto s = tx.begin(); !s) return s;
    auto s = Stmt::prepare(impl_->h(), "DELETE FROM tenants WHERE name = ?1", op);  // keys: ON DELETE CASCADE
    if (!s) return s.error();
    s->bind(1, name);
    if (auto r = s->run(); !r) return r;
    if (sqlite3_changes(impl_->h()) == 0) return unknown_tenant(name);
    if (auto r = impl_->collect_guests(op); !r) return r;
    return tx.commit();
}

// --- API keys ------------------------------------------------------------------------------------------------

Result<NewKey> Store::create_key(std::string_view tenant, std::string_view label) {
    if (label.size() > 256) return make_error("key label is longer than 256 bytes");
    auto prefix = random_hex(kPrefixHex / 2);
    if (!prefix) return prefix.error();
    auto secret = random_hex(kSecretHex / 2);
    if (!secret) return secret.error();
    // No salt: the secret is 256 random bits, so neither precomputed tables nor guessing apply; a salt only
    // helps low-entropy secrets such as passwords. A fast hash is then enough and keeps authenticate cheap.
    const Sha256 digest = sha256(*secret);

    std::lock_guard lock(impl_->mu);
    const char* op = "create_key";
    auto exists = impl_->tenant_exists(tenant, op);
    if (!exists) return exists.error();
    if (!*exists) return unknown_tenant(tenant);
    auto s = Stmt::prepare(impl_->h(),
                           "INSERT INTO api_keys (tenant, label, prefix, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                           op);
    if (!s) return s.error();
    NewKey k;
    k.key.tenant = std::string(tenant);
    k.key.label = std::string(label);
    k.key.prefix = *prefix;
    k.key.created_at = unix_now();
    s->bind(1, tenant).bind(2, label).bind(3, *prefix).bind_blob(4, digest).bind(5, k.key.created_at);
    if (auto r = s->run(); !r) return r.error();
    k.key.id = sqlite3_last_insert_rowid(impl_->h());
    k.secret = std::string(kKeyTag) + *prefix + "_" + *secret;
    return k;
}

Result<AuthResult> Store::authenticate(std::string_view presented) {
    AuthResult out;
    if (presented.size() != kKeyLen || presented.substr(0, kKeyTag.size()) != kKeyTag ||
        presented[kKeyTag.size() + kPrefixHex] != '_') {
        out.status = AuthStatus::malformed;
        return out;
    }
    const std::string_view prefix = presented.substr(kKeyTag.size(), kPrefixHex);
    const std::string_view secret = presented.substr(kKeyTag.size() + kPrefixHex + 1);
    if (!is_lower_hex(prefix) || !is_lower_hex(secret)) {
        out.status = AuthStatus::malformed;
        return out;
    }
    const Sha256 digest = sha256(secret);

    std::lock_guard lock(impl_->mu);
    const char* op = "authenticate";
    std::optional<int64_t> last_used;
    {
        // Scoped: the read statement is finished before the UPDATE below, so that write commits on its own.
        auto s = Stmt::prepare(impl_->h(),
                               "SELECT id, tenant, hash, revoked_at, last_used_at FROM api_keys WHERE prefix = ?1", op);
        if (!s) return s.error();
        s->bind(1, prefix);
        auto row = s->step();
        if (!row) return row.error();
        if (!*row) {
            out.status = AuthStatus::unknown;
            return out;
        }
        const auto stored = s->blob(2);
        if (stored.size() != digest.size() || CRYPTO_memcmp(stored.data(), digest.data(), digest.size()) != 0) {
            out.status = AuthStatus::unknown;
            return out;
        }
        out.key_id = s->int64(0);
        out.tenant = s->text(1);
        if (!s->is_null(3)) {
            out.status = AuthStatus::revoked;
            return out;
        }
        last_used = s->opt_int64(4);
    }
    out.status = AuthStatus::ok;
    const int64_t now = unix_now();
    if (!last_used || now - *last_used >= kLastUsedGranularity) {
        auto u = Stmt::prepare(impl_->h(), "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1", op);
        if (!u) return u.error();
        u->bind(1, out.key_id).bind(2, now);
        if (auto r = u->run(); !r) return r.error();
    }
    return out;
}

Status Store::revoke_key(int64_t id) {
    std::lock_guard lock(impl_->mu);
    auto s = Stmt::prepare(impl_->h(), "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
                           "revoke_key");
    if (!s) return s.error();
    s->bind(1, id).bind(2, unix_now());
    if (auto r = s->run(); !r) return r;
    if (sqlite3_changes(impl_->h()) == 0) return make_error("unknown key id " + std::to_string(id));
    return {};
}

Result<std::vector<ApiKey>> Store::list_keys(std::optional<std::string_view> tenant) {
    std::lock_guard lock(impl_->mu);
    auto s = Stmt::prepare(impl_->h(),
                           std::string("SELECT ") + kKeyColumns +
                               " FROM api_keys WHERE ?1 IS NULL OR tenant = ?1 ORDER BY id",
                           "list_keys");
    if (!s) return s.error();
    if (tenant) s->bind(1, *tenant);
    else s->bind_null(1);
    std::vector<ApiKey> out;
    for (;;) {
        auto row = s->step();
        if (!row) return row.error();
        if (!*row) break;
        out.push_back(read_key(*s));
    }
    return out;
}

// --- Guests --------------------------------------------------------------------------------------------------

Result<Sha256> Store::register_guest(std::string_view tenant, std::span<const uint8_t> module) {
    if (module.empty()) return make_error("the guest module is empty");
    const Sha256 digest = sha256(module);
    std::lock_guard lock(impl_->mu);
    const char* op = "register_guest";
    Transaction tx(impl_->h(), op);
    if (auto s = tx.begin(); !s) return s.error();
    auto exists = impl_->tenant_exists(tenant, op);
    if (!exists) return exists.error();
    if (!*exists) return unknown_tenant(tenant);
    {
        auto s = Stmt::prepare(impl_->h(),
                               "INSERT INTO guests (sha256, module, created_at) VALUES (?1, ?2, ?3) "
                               "ON CONFLICT (sha256) DO NOTHING",
                               op);
        if (!s) return s.error();
        s->bind_blob(1, digest).bind_blob(2, module).bind(3, unix_now());
        if (auto r = s->run(); !r) return r.error();
    }
    {
        auto s = Stmt::prepare(impl_->h(), "UPDATE tenants SET guest = ?2 WHERE name = ?1", op);
        if (!s) return s.error();
        s->bind(1, tenant).bind_blob(2, digest);
        if (auto r = s->run(); !r) return r.error();
    }
    if (auto r = impl_->collect_guests(op); !r) return r.error();
    if (auto r = tx.commit(); !r) return r.error();
    return digest;
}

Status Store::clear_guest(std::string_view tenant) {
    std::lock_guard lock(impl_->mu);
    const char* op = "clear_guest";
    Transaction tx(impl_->h(), op);
    if (auto s = tx.begin(); !s) return s;
    auto s = Stmt::prepare(impl_->h(), "UPDATE tenants SET guest = NULL WHERE name = ?1", op);
    if (!s) return s.error();
    s->bind(1, tenant);
    if (auto r = s->run(); !r) return r;
    if (sqlite3_changes(impl_->h()) == 0) return unknown_tenant(tenant);
    if (auto r = impl_->collect_guests(op); !r) return r;
    return tx.commit();
}

Result<std::optional<std::vector<uint8_t>>> Store::guest_module(std::string_view tenant) {
    std::lock_guard lock(impl_->mu);
    auto s = Stmt::prepare(impl_->h(),
                           "SELECT g.module FROM tenants t LEFT JOIN guests g ON g.sha256 = t.guest WHERE t.name = ?1",
                           "guest_module");
    if (!s) return s.error();
    s->bind(1, tenant);
    auto row = s->step();
    if (!row) return row.error();
    if (!*row) return unknown_tenant(tenant);
    if (s->is_null(0)) return std::optional<std::vector<uint8_t>>();
    return std::optional<std::vector<uint8_t>>(s->blob(0));
}

// --- Usage ---------------------------------------------------------------------------------------------------

Result<int64_t> Store::record_usage(const UsageRecord& r) {
    if (r.prompt_tokens > kMaxInt64 || r.completion_tokens > kMaxInt64 || r.latency_ms > kMaxInt64)
        return make_error("store: record_usage: counter out of range");
    std::lock_guard lock(impl_->mu);
    const char* op = "record_usage";
    auto s = Stmt::prepare(impl_->h(),
                           "INSERT INTO usage (request_id, tenant, key_id, model, endpoint, prompt_tokens, "
                           "completion_tokens, latency_ms, status, error_kind, error_message, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                           op);
    if (!s) return s.error();
    s->bind(1, r.request_id).bind(2, r.tenant);
    if (r.key_id) s->bind(3, *r.key_id);
    else s->bind_null(3);
    s->bind(4, r.model)
        .bind(5, r.endpoint)
        .bind(6, static_cast<int64_t>(r.prompt_tokens))
        .bind(7, static_cast<int64_t>(r.completion_tokens))
        .bind(8, static_cast<int64_t>(r.latency_ms))
        .bind(9, int64_t{r.status})
        .bind(10, r.error_kind)
        .bind(11, r.error_message)
        .bind(12, r.created_at != 0 ? r.created_at : unix_now());
    if (auto res = s->run(); !res) return res.error();
    return sqlite3_last_insert_rowid(impl_->h());
}

Result<std::vector<UsageRecord>> Store::usage(std::optional<std::string_view> tenant, uint32_t limit) {
    std::lock_guard lock(impl_->mu);
    auto s = Stmt::prepare(impl_->h(),
                           "SELECT id, request_id, tenant, key_id, model, endpoint, prompt_tokens, completion_tokens, "
                           "latency_ms, status, error_kind, error_message, created_at FROM usage "
                           "WHERE ?1 IS NULL OR tenant = ?1 ORDER BY id DESC LIMIT ?2",
                           "usage");
    if (!s) return s.error();
    if (tenant) s->bind(1, *tenant);
    else s->bind_null(1);
    s->bind(2, int64_t{limit});
    std::vector<UsageRecord> out;
    for (;;) {
        auto row = s->step();
        if (!row) return row.error();
        if (!*row) break;
        UsageRecord u;
        u.id = s->int64(0);
        u.request_id = s->text(1);
        u.tenant = s->text(2);
        u.key_id = s->opt_int64(3);
        u.model = s->text(4);
        u.endpoint = s->text(5);
        u.prompt_tokens = s->uint(6);
        u.completion_tokens = s->uint(7);
        u.latency_ms = s->uint(8);
        u.status = static_cast<int>(s->int64(9));
        u.error_kind = s->text(10);
        u.error_message = s->text(11);
        u.created_at = s->int64(12);
        out.push_back(std::move(u));
    }
    return out;
}

Result<UsageTotals> Store::usage_totals(std::string_view tenant) {
    std::lock_guard lock(impl_->mu);
    auto s = Stmt::prepare(impl_->h(),
                           "SELECT count(*), coalesce(sum(status >= 400), 0), coalesce(sum(prompt_tokens), 0), "
                           "coalesce(sum(completion_tokens), 0) FROM usage WHERE tenant = ?1",
                           "usage_totals");
    if (!s) return s.error();
    s->bind(1, tenant);
    auto row = s->step();
    if (!row) return row.error();
    UsageTotals t;
    if (*row) {
        t.requests = s->uint(0);
        t.errors = s->uint(1);
        t.prompt_tokens = s->uint(2);
        t.completion_tokens = s->uint(3);
    }
    return t;
}

// --- Admin key -----------------------------------------------------------------------------------------------

Status Store::set_admin_key(std::string_view key) {
    if (key.size() < 16) return make_error("the admin key must be at least 16 bytes");
    const Sha256 digest = sha256(key);
    std::lock_guard lock(impl_->mu);
    auto s = Stmt::prepare(impl_->h(),
                           "INSERT INTO settings (key, value) VALUES (?1, ?2) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           "set_admin_key");
    if (!s) return s.error();
    s->bind(1, kAdminSetting).bind_blob(2, digest);
    return s->run();
}

Result<std::string> Store::create_admin_key() {
    auto secret = random_hex(kSecretHex / 2);
    if (!secret) return secret.error();
    std::string key = "rlm_admin_" + *secret;
    if (auto s = set_admin_key(key); !s) return s.error();
    return key;
}

Result<bool> Store::check_admin_key(std::string_view presented) {
    const Sha256 digest = sha256(presented);
    std::lock_guard lock(impl_->mu);
    auto s = Stmt::prepare(impl_->h(), "SELECT value FROM settings WHERE key = ?1", "check_admin_key");
    if (!s) return s.error();
    s->bind(1, kAdminSetting);
    auto row = s->step();
    if (!row) return row.error();
    if (!*row) return false;
    const auto stored = s->blob(0);
    return stored.size() == digest.size() && CRYPTO_memcmp(stored.data(), digest.data(), digest.size()) == 0;
}

}  // namespace realm::server
