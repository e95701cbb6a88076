#include "server/admin.hpp"

#include <charconv>
#include <optional>
#include <vector>

namespace realm::server {

using nlohmann::json;

namespace {
json opt(const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); }
}  // namespace

json tenant_json(const Tenant& t) {
    const auto& l = t.limits;
    return {{"name", t.name},
            {"models", t.models},
            {"guest", t.guest ? json(to_hex(*t.guest)) : json(nullptr)},
            {"limits",
             {{"requests_per_minute", l.requests_per_minute},
              {"tokens_per_minute", l.tokens_per_minute},
              {"max_concurrent", l.max_concurrent},
              {"max_tokens_per_request", l.max_tokens_per_request},
              {"guest_memory_bytes", l.guest_memory_bytes},
              {"guest_time_ms", l.guest_time_ms}}},
            {"created_at", t.created_at}};
}

json key_json(const ApiKey& k) {
    return {{"id", k.id},
            {"tenant", k.tenant},
            {"label", k.label},
            {"prefix", k.prefix},
            {"created_at", k.created_at},
            {"last_used_at", opt(k.last_used_at)},
            {"revoked_at", opt(k.revoked_at)},
            {"status", k.revoked_at ? "revoked" : "active"}};
}

json usage_json(const UsageRecord& u) {
    return {{"id", u.id},
            {"request_id", u.request_id},
            {"tenant", u.tenant},
            {"key_id", opt(u.key_id)},
            {"model", u.model},
            {"endpoint", u.endpoint},
            {"prompt_tokens", u.prompt_tokens},
            {"completion_tokens", u.completion_tokens},
            {"latency_ms", u.latency_ms},
            {"status", u.status},
            {"error_kind", u.error_kind},
            {"error_message", u.error_message},
            {"created_at", u.created_at}};
}

namespace {

AdminResponse err(int status, std::string type, std::string message, std::string code = {}) {
    return {status, ApiError::make(status, std::move(type), std::move(message), std::move(code)).body()};
}
AdminResponse bad(std::string message) { return err(400, "invalid_request_error", std::move(message)); }
AdminResponse not_found(std::string message) { return err(404, "invalid_request_error", std::move(message), "not_found"); }
AdminResponse store_error(const Error& e) {
    // Database failures are "store: <operation>: ..."; the Store's other errors are about the input.
    if (e.message.starts_with("store:")) return err(500, "server_error", e.message);
    if (e.message.starts_with("unknown")) return not_found(e.message);
    if (e.message.find("already exists") != std::string::npos) return err(409, "invalid_request_error", e.message, "conflict");
    return bad(e.message);
}


template <class T>
std::string read_uint(const json& limits, const char* key, T& out) {
    auto it = limits.find(key);
    if (it == limits.end()) return {};
    if (!it->is_number_unsigned() || it->get<uint64_t>() > std::numeric_limits<T>::max())
        return std::string("limits.") + key + " must be a non-negative integer in range";
    out = static_cast<T>(it->get<uint64_t>());
    return {};
}

// Applies the "models" and "limits" fields of `j` to `t`; returns an error message or "".
std::string apply_fields(const json& j, Tenant& t) {
    if (auto it = j.find("models"); it != j.end()) {
        if (!it->is_array()) return "\"models\" must be an array of model names (\"*\": all)";
        std::vector<std::string> models;
        for (const auto& m : *it) {
            if (!m.is_string() || m.get_ref<const std::string&>().empty()) return "\"models\" must hold non-empty strings";
            models.push_back(m.get<std::string>());
        }
        t.models = std::move(models);
    }
    if (auto it = j.find("limits"); it != j.end()) {
        if (!it->is_object()) return "\"limits\" must be an object";
        auto& l = t.limits;
        for (auto e : {read_uint(*it, "requests_per_minute", l.requests_per_minute),
                       read_uint(*it, "tokens_per_minute", l.tokens_per_minute),
                       read_uint(*it, "max_concurrent", l.max_concurrent),
                       read_uint(*it, "max_tokens_per_request", l.max_tokens_per_request),
                       read_uint(*it, "guest_memory_bytes", l.guest_memory_bytes),
                       read_uint(*it, "guest_time_ms", l.guest_time_ms)})
            if (!e.empty()) return e;
    }
    return {};
}

// One query parameter's raw value (no percent-decoding: tenant names are [A-Za-z0-9_.-]).
std::optional<std::string> query_param(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto part = query.substr(0, amp);
        const auto eq = part.find('=');
        if (part.substr(0, eq) == name) return std::string(eq == std::string_view::npos ? "" : part.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> parts;
    while (!path.empty()) {
        if (path.front() == '/') {
            path.remove_prefix(1);
            continue;
        }
        const auto slash = path.find('/');
        parts.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash);
    }
    return parts;
}

}  // namespace

AdminResponse AdminApi::handle(std::string_view method, std::string_view path, std::string_view query,
                               std::string_view body, std::string_view authorization) {
    std::string_view key = authorization;
    if (key.size() >= 7 && (key.substr(0, 7) == "Bearer " || key.substr(0, 7) == "bearer ")) key.remove_prefix(7);
    if (key.empty()) return err(401, "authentication_error", "the admin API needs the admin key", "missing_api_key");
    auto ok = svc_.store().check_admin_key(key);
    if (!ok) return err(500, "server_error", ok.error().message);
    if (!*ok) return err(401, "authentication_error", "invalid admin key", "invalid_api_key");

    Store& st = svc_.store();
    const auto p = split_path(path);  // p[0] == "admin"
    const auto parse_body = [&]() -> std::optional<json> {
        json j = json::parse(body.begin(), body.end(), nullptr, false);
        if (j.is_discarded() || !j.is_object()) return std::nullopt;
        return j;
    };

    if (p.size() == 2 && p[1] == "tenants") {
        if (method == "GET") {
            auto ts = st.list_tenants();
            if (!ts) return store_error(ts.error());
            json out = json::array();
            for (const auto& t : *ts) out.push_back(tenant_json(t));
            return {200, json{{"tenants", std::move(out)}}};
        }
        if (method == "POST") {
            auto j = parse_body();
            if (!j) return bad("the body must be a JSON object");
            Tenant t;
            t.models = {"*"};
            if (!j->contains("name") || !(*j)["name"].is_string()) return bad("\"name\" is required");
            t.name = (*j)["name"].get<std::string>();
            if (auto e = apply_fields(*j, t); !e.empty()) return bad(e);
            auto added = st.add_tenant(t);
            if (!added) return store_error(added.error());
            return {201, tenant_json(*added)};
        }
    }
    if (p.size() == 3 && p[1] == "tenants") {
        const std::string name(p[2]);
        if (method == "GET") {
            auto t = st.get_tenant(name);
            if (!t) return store_error(t.error());
            return {200, tenant_json(*t)};
        }
        if (method == "PATCH") {
            auto j = parse_body();
            if (!j) return bad("the body must be a JSON object");
            auto t = st.get_tenant(name);
            if (!t) return store_error(t.error());
            if (auto e = apply_fields(*j, *t); !e.empty()) return bad(e);
            if (auto r = st.update_tenant(*t); !r) return store_error(r.error());
            return {200, tenant_json(*t)};
        }
        if (method == "DELETE") {
            if (auto r = st.remove_tenant(name); !r) return store_error(r.error());
            svc_.forget_tenant(name);
            return {200, json{{"removed", name}}};
        }
    }
    if (p.size() == 4 && p[1] == "tenants" && p[3] == "keys" && method == "POST") {
        std::string label;
        if (!body.empty()) {
            auto j = parse_body();
            if (!j) return bad("the body must be a JSON object");
            if (auto it = j->find("label"); it != j->end()) {
                if (!it->is_string()) return bad("\"label\" must be a string");
                label = it->get<std::string>();
            }
        }
        auto k = st.create_key(std::string(p[2]), label);
        if (!k) return store_error(k.error());
        return {201, json{{"key", key_json(k->key)}, {"secret", k->secret}}};
    }
    if (p.size() == 4 && p[1] == "tenants" && p[3] == "guest") {
        const std::string name(p[2]);
        if (method == "PUT") {
            if (auto t = st.get_tenant(name); !t) return store_error(t.error());
            const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(body.data()), body.size());
            if (auto v = svc_.validate_guest(bytes); !v) return bad("invalid guest module: " + v.error().message);
            auto d = st.register_guest(name, bytes);
            if (!d) return store_error(d.error());
            return {200, json{{"tenant", name}, {"sha256", to_hex(*d)}}};
        }
        if (method == "DELETE") {
            if (auto r = st.clear_guest(name); !r) return store_error(r.error());
            return {200, json{{"tenant", name}, {"guest", nullptr}}};
        }
    }
    if (p.size() == 2 && p[1] == "keys" && method == "GET") {
        const auto tenant = query_param(query, "tenant");
        auto ks = tenant ? st.list_keys(std::string_view(*tenant)) : st.list_keys();
        if (!ks) return store_error(ks.error());
        json out = json::array();
        for (const auto& k : *ks) out.push_back(key_json(k));
        return {200, json{{"keys", std::move(out)}}};
    }
    if (p.size() == 3 && p[1] == "keys" && method == "DELETE") {
        int64_t id = 0;
        const auto s = p[2];
        if (auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), id); ec != std::errc() || ptr != s.data() + s.size())
            return bad("key ids are integers");
        if (auto r = st.revoke_key(id); !r) return store_error(r.error());
        return {200, json{{"revoked", id}}};
    }
    if (p.size() == 2 && p[1] == "usage" && method == "GET") {
        const auto tenant = query_param(query, "tenant");
        uint32_t limit = 100;
        if (auto l = query_param(query, "limit")) {
            if (auto [ptr, ec] = std::from_chars(l->data(), l->data() + l->size(), limit);
                ec != std::errc() || ptr != l->data() + l->size() || limit == 0 || limit > 10000)
                return bad("limit must be an integer in 1..10000");
        }
        auto rows = tenant ? st.usage(std::string_view(*tenant), limit) : st.usage(std::nullopt, limit);
        if (!rows) return store_error(rows.error());
        json out = {{"rows", json::array()}};
        for (const auto& u : *rows) out["rows"].push_back(usage_json(u));
        if (tenant) {
            auto t = st.usage_totals(*tenant);
            if (!t) return store_error(t.error());
            out["totals"] = {{"requests", t->requests},
                             {"errors", t->errors},
                             {"prompt_tokens", t->prompt_tokens},
                             {"completion_tokens", t->completion_tokens}};
        }
        return {200, std::move(out)};
    }
    return not_found("unknown admin route: " + std::string(method) + " " + std::string(path));
}

}  // namespace realm::server
