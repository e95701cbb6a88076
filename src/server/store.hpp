// Persistent tenant store: tenants and their limits, API keys, guest modules, per-request usage rows and
// the admin key, in one SQLite file (WAL, synchronous=FULL, foreign keys on, schema versioned with
// PRAGMA user_version and created on open).
//
// Thread-safe: one connection behind a mutex; every method may be called from any thread. Every method
// returns a Result/Status; an SQL failure is an error value naming the operation ("store: add_tenant: ...").
//
//   auto store = realm::server::Store::open("/var/lib/realm/realm.db");
//   if (!store) ...;
//   realm::server::Tenant t; t.name = "acme"; t.models = {"*"};
//   (*store)->add_tenant(t);
//   auto k = (*store)->create_key("acme", "ci");        // k->secret is shown to the user once
//   auto a = (*store)->authenticate(bearer_token);      // !a: database failure (500)
//   if (a->status != realm::server::AuthStatus::ok) ...  // 401; log to_string(a->status)
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/result.hpp"

namespace realm::server {

using Sha256 = std::array<uint8_t, 32>;

// Lowercase hex of a digest (for logs, the CLI and JSON).
std::string to_hex(const Sha256& digest);

// Per-tenant limits. For the first four, 0 means unlimited. The guest's memory and time budgets must be > 0
// (a guest always runs under a budget). The defaults suit one small shared machine.
struct Limits {
    uint32_t requests_per_minute = 60;
    uint64_t tokens_per_minute = 20000;        // prompt + completion tokens
    uint32_t max_concurrent = 4;               // requests in flight at once
    uint32_t max_tokens_per_request = 2048;    // cap on a request's max_tokens (checked by the HTTP layer)
    uint64_t guest_memory_bytes = 256ull << 20;  // linear-memory cap of the tenant's guest instance
    uint32_t guest_time_ms = 120000;           // wall-clock budget of one request in the guest
};

struct Tenant {
    std::string name;                  // [A-Za-z0-9_.-]{1,64}
    std::vector<std::string> models;   // model names the tenant may use; "*" = every model
    std::optional<Sha256> guest;       // registered guest module; nullopt = the default guest
    Limits limits;
    int64_t created_at = 0;            // unix seconds; set by add_tenant

    bool allows_model(std::string_view model) const;
};

// True for names matching [A-Za-z0-9_.-]{1,64}.
bool valid_tenant_name(std::string_view name);

struct ApiKey {
    int64_t id = 0;
    std::string tenant;
    std::string label;
    std::string prefix;  // the public part of the key (rlm_<prefix>_...), safe to show and log
    int64_t created_at = 0;
    std::optional<int64_t> revoked_at;
    std::optional<int64_t> last_used_at;  // updated by a successful authenticate
};

// A newly created key: the row, and the plaintext key, which is never stored and cannot be shown again.
struct NewKey {
    ApiKey key;
    std::string secret;  // "rlm_<16 hex public prefix>_<64 hex secret>"
};

enum class AuthStatus {
    ok,
    malformed,  // not of the form rlm_<16 hex>_<64 hex>
    unknown,    // no key with that prefix, or its secret does not match
    revoked,    // the key exists and matches but was revoked
};
std::string_view to_string(AuthStatus s);

struct AuthResult {
    AuthStatus status = AuthStatus::unknown;
    int64_t key_id = 0;   // set when status is ok or revoked
    std::string tenant;   // set when status is ok or revoked
};

// One row per request the server answered (successfully or not).
struct UsageRecord {
    int64_t id = 0;                 // assigned by record_usage
    std::string request_id;
    std::string tenant;             // kept as text: rows outlive their tenant
    std::optional<int64_t> key_id;  // nullopt for requests that did not authenticate with a tenant key
    std::string model;
    std::string endpoint;           // e.g. "/v1/chat/completions"
    uint64_t prompt_tokens = 0;
    uint64_t completion_tokens = 0;
    uint64_t latency_ms = 0;
    int status = 200;               // HTTP status
    std::string error_kind;         // empty when the request succeeded
    std::string error_message;
    int64_t created_at = 0;         // unix seconds; 0 = now
};

struct UsageTotals {
    uint64_t requests = 0;
    uint64_t errors = 0;  // rows with status >= 400
    uint64_t prompt_tokens = 0;
    uint64_t completion_tokens = 0;
};

class Store {
public:
    // Opens (creating it and its schema if needed) the database at `path`. The parent directory must exist.
    // Fails on a file that is not a database or has a schema version newer than this build knows.
    static Result<std::unique_ptr<Store>> open(const std::filesystem::path& path);
    struct Impl;  // defined in store.cpp; only open() can make one
    explicit Store(std::unique_ptr<Impl> impl);
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // --- Tenants -----------------------------------------------------------------------------------------
    // add_tenant fails on a bad or duplicate name, an empty model name or invalid limits. t.created_at and
    // t.guest are ignored (guests are set with register_guest); returns the stored row.
    Result<Tenant> add_tenant(const Tenant& t);
    Result<Tenant> get_tenant(std::string_view name);  // error "unknown tenant 'x'" when absent
    Result<std::vector<Tenant>> list_tenants();         // ordered by name
    // Replaces models and limits of an existing tenant (name, guest and created_at are kept).
    Status update_tenant(const Tenant& t);
    // Deletes the tenant and its API keys (they stop authenticating at once); usage rows stay.
    Status remove_tenant(std::string_view name);

    // --- API keys ----------------------------------------------------------------------------------------
    // Returns the plaintext key once; only SHA-256 of the secret part is stored.
    Result<NewKey> create_key(std::string_view tenant, std::string_view label);
    // Any byte string is accepted as input (bearer tokens are attacker-controlled); the error is for
    // database failures only, an unauthenticated key is a status.
    Result<AuthResult> authenticate(std::string_view presented);
    Status revoke_key(int64_t id);  // error for an unknown id; revoking twice is fine
    // Keys of one tenant, or all when `tenant` is nullopt, ordered by id. Never contains secrets or hashes.
    Result<std::vector<ApiKey>> list_keys(std::optional<std::string_view> tenant = std::nullopt);

    // --- Guests ------------------------------------------------------------------------------------------
    // Stores the module (keyed by its SHA-256) and points the tenant at it. Does NOT validate the wasm:
    // callers load it in a sandbox::Sandbox first. Returns the digest.
    Result<Sha256> register_guest(std::string_view tenant, std::span<const uint8_t> module);
    // Points the tenant back at the default guest.
    Status clear_guest(std::string_view tenant);
    // The tenant's registered module bytes, or nullopt for the default guest.
    Result<std::optional<std::vector<uint8_t>>> guest_module(std::string_view tenant);

    // --- Usage -------------------------------------------------------------------------------------------
    // Durable once it returns (synchronous=FULL). Returns the row id.
    Result<int64_t> record_usage(const UsageRecord& r);
    // The most recent `limit` rows (newest first), of one tenant or all.
    Result<std::vector<UsageRecord>> usage(std::optional<std::string_view> tenant, uint32_t limit = 100);
    Result<UsageTotals> usage_totals(std::string_view tenant);

    // --- Admin key ---------------------------------------------------------------------------------------
    // Stores SHA-256 of `key` (at least 16 bytes) as the admin key, replacing any previous one.
    Status set_admin_key(std::string_view key);
    // Generates a random admin key ("rlm_admin_<64 hex>"), stores its hash and returns it once.
    Result<std::string> create_admin_key();
    // Constant-time comparison; false when no admin key is set.
    Result<bool> check_admin_key(std::string_view presented);

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace realm::server
