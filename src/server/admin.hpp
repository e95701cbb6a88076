// The admin HTTP API under /admin/, guarded by the admin key (Authorization: Bearer <admin key>, checked in
// constant time by the Store). Transport-independent: the HTTP front end hands it method, path, query and body.
//
//   GET    /admin/tenants                     list tenants
//   POST   /admin/tenants                     {"name", "models": [...], "limits": {...}} -> 201 tenant
//   GET    /admin/tenants/NAME                one tenant
//   PATCH  /admin/tenants/NAME                {"models"?, "limits"?: {...}} (fields given replace the stored ones)
//   DELETE /admin/tenants/NAME                remove the tenant and its keys (usage rows stay)
//   POST   /admin/tenants/NAME/keys           {"label"?} -> 201 {"key": {...}, "secret": "rlm_..."} (shown once)
//   PUT    /admin/tenants/NAME/guest          body: the .wasm module, validated by the sandbox -> {"sha256"}
//   DELETE /admin/tenants/NAME/guest          back to the default guest
//   GET    /admin/keys[?tenant=NAME]          keys (never secrets or hashes)
//   DELETE /admin/keys/ID                     revoke a key
//   GET    /admin/usage[?tenant=NAME&limit=N] recent usage rows (newest first) and, for one tenant, totals
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/service.hpp"

namespace realm::server {

// The JSON views of store rows shared by the admin API and `realm tenant/key/usage --json` (never secrets or hashes).
nlohmann::json tenant_json(const Tenant& t);
nlohmann::json key_json(const ApiKey& k);
nlohmann::json usage_json(const UsageRecord& u);

struct AdminResponse {
    int status = 200;
    nlohmann::json body;
};

class AdminApi {
public:
    explicit AdminApi(Service& service) : svc_(service) {}

    // `path` starts with "/admin/"; `query` is the part after '?' (may be empty).
    AdminResponse handle(std::string_view method, std::string_view path, std::string_view query,
                         std::string_view body, std::string_view authorization);

private:
    Service& svc_;
};

}  // namespace realm::server
