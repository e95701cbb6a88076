#include "server/http.hpp"

#include "server/admin.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <map>
#include <csignal>
#include <deque>
#include <optional>
#include <thread>
#include <vector>

namespace realm::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kMaxHeaderBytes = 16 * 1024;
constexpr size_t kMaxPipelinedBytes = 64 * 1024;   // read ahead while a request runs
constexpr size_t kMaxPendingOutput = 16u << 20;    // a client that stops reading its stream is dropped

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string reason(int status) {
    switch (status) {
        case 499: return "Client Closed Request";
        default: break;
    }
    const auto r = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
    return r.empty() || r.front() == '<' ? std::string("Error") : std::string(r);
}

std::string to_hex(size_t n) {
    char buf[20];
    std::snprintf(buf, sizeof buf, "%zx", n);
    return buf;
}

}  // namespace

struct HttpServer::Impl {
    Impl(Service& s, const HttpOptions& o) : svc(s), opts(o), acceptor(ioc), signals(ioc, SIGINT, SIGTERM), poll(ioc) {}

    Service& svc;
    HttpOptions opts;
    // Declared before the io_context: sessions destroyed with its pending handlers still touch them.
    std::atomic<bool> shutting_down{false};
    std::atomic<int64_t> pending{0};  // responses of generation requests not yet completely written
    asio::io_context ioc;
    tcp::acceptor acceptor;
    asio::signal_set signals;
    asio::steady_timer poll;
    Clock::time_point shutdown_started;
    bool cancelled_all = false;
    int64_t started_unix = 0;

    void accept();
    void on_signal();
    void poll_shutdown();
};

namespace {

// Counts a generation response as pending until its last byte was written (or the client went away).
class PendingToken {
public:
    explicit PendingToken(std::atomic<int64_t>& c) : c_(c) { c_.fetch_add(1); }
    ~PendingToken() { c_.fetch_sub(1); }
    PendingToken(const PendingToken&) = delete;
    PendingToken& operator=(const PendingToken&) = delete;

private:
    std::atomic<int64_t>& c_;
};

// /v1/ws (docs/WEBSOCKET.md): JSON text messages; several generations in flight per socket, each with the
// client's id; output, final usage and errors carry that id; {"type":"cancel","id":...} stops one.
class WsSession : public std::enable_shared_from_this<WsSession> {
public:
    static constexpr size_t kMaxInFlight = 32;

    WsSession(beast::tcp_stream stream, HttpServer::Impl& srv) : ws_(std::move(stream)), srv_(srv) {}

    void run(http::request<http::string_body> req) {
        const auto auth = req[http::field::authorization];
        header_auth_ = std::string(auth.data(), auth.size());
        beast::get_lowest_layer(ws_).expires_never();
        ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
        ws_.read_message_max(srv_.opts.max_body_bytes);
        ws_.async_accept(req, [self = shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
    }

private:
    void on_accept(beast::error_code ec) {
        if (ec) return;
        if (!header_auth_.empty()) authenticate(header_auth_, {});
        read();
    }

    void read() {
        ws_.async_read(in_, [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
        if (ec) {
            // Closed or broken: stop everything this socket started.
            closed_ = true;
            for (auto& [id, flag] : inflight_) flag->store(true);
            return;
        }
        std::string text = beast::buffers_to_string(in_.data());
        in_.consume(in_.size());
        handle(text);
        read();
    }

    void handle(const std::string& text) {
        json m = json::parse(text, nullptr, false);
        if (m.is_discarded() || !m.is_object() || !m.contains("type") || !m["type"].is_string())
            return send_error({}, ApiError::make(400, "invalid_request_error", "messages are JSON objects with a string \"type\"", "invalid_message"));
        const std::string type = m["type"].get<std::string>();
        const std::string id = m.contains("id") && m["id"].is_string() ? m["id"].get<std::string>() : std::string();
        if (type == "auth") {
            const std::string key = m.contains("api_key") && m["api_key"].is_string() ? m["api_key"].get<std::string>() : "";
            return authenticate(key, id);
        }
        if (type == "cancel") {
            auto it = inflight_.find(id);
            if (it == inflight_.end())
                return send_error(id, ApiError::make(404, "invalid_request_error", "no request in flight with this id", "unknown_id"));
            it->second->store(true);
            return;
        }
        if (type != "generate")
            return send_error(id, ApiError::make(400, "invalid_request_error", "unknown message type '" + type + "'", "invalid_message"));
        if (!who_) return send_error(id, ApiError::make(401, "authentication_error", "authenticate first: {\"type\":\"auth\",\"api_key\":...}", "missing_api_key"));
        if (id.empty() || id.size() > 256) return send_error({}, ApiError::make(400, "invalid_request_error", "\"id\" must be a string of 1 to 256 bytes", "invalid_id"));
        if (inflight_.count(id)) return send_error(id, ApiError::make(400, "invalid_request_error", "a request with this id is in flight", "duplicate_id"));
        if (inflight_.size() >= kMaxInFlight)
            return send_error(id, ApiError::make(429, "rate_limit_error", "too many requests in flight on this socket", "too_many_in_flight"));
        const std::string ep = m.contains("endpoint") && m["endpoint"].is_string() ? m["endpoint"].get<std::string>() : "chat";
        if (ep != "chat" && ep != "completions")
            return send_error(id, ApiError::make(400, "invalid_request_error", "\"endpoint\" is \"chat\" or \"completions\"", "invalid_endpoint"));
        if (!m.contains("request") || !m["request"].is_object())
            return send_error(id, ApiError::make(400, "invalid_request_error", "\"request\" must be an object (an OpenAI request body)", "invalid_message"));
        json body = m["request"];
        body["stream"] = true;  // the socket always streams; "stream_options" are not needed
        body.erase("stream_options");
        auto prep = srv_.svc.prepare(*who_, ep == "chat" ? Endpoint::chat : Endpoint::completions,
                                     body.dump(-1, ' ', false, json::error_handler_t::replace));
        if (!prep.job) return send_error(id, prep.error);
        auto flag = std::make_shared<std::atomic<bool>>(false);
        inflight_.emplace(id, flag);
        auto self = shared_from_this();
        auto ex = ws_.get_executor();
        GenerateHandlers h;
        h.on_text = [self, ex, id](uint32_t i, std::string_view t) {
            asio::post(ex, [self, id, i, text = std::string(t)] {
                self->send(json{{"type", "chunk"}, {"id", id}, {"choice", i}, {"text", text}});
            });
        };
        h.on_done = [self, ex, id](json resp) {
            asio::post(ex, [self, id, r = std::move(resp)]() mutable {
                self->inflight_.erase(id);
                self->send(json{{"type", "done"}, {"id", id}, {"response", std::move(r)}});
            });
        };
        h.on_error = [self, ex, id](const ApiError& e) {
            asio::post(ex, [self, id, e] {
                self->inflight_.erase(id);
                self->send_error(id, e);
            });
        };
        srv_.svc.submit(std::move(*prep.job), std::move(h), flag);
    }

    void authenticate(const std::string& key, const std::string& id) {
        auto r = srv_.svc.authenticate(key);
        if (!r.principal) {
            srv_.svc.record_refusal(nullptr, "/v1/ws", "", r.error, Clock::now(), srv_.svc.new_request_id());
            return send_error(id, r.error);
        }
        who_ = std::move(r.principal);
        send(json{{"type", "authenticated"}, {"tenant", who_->tenant.name}, {"models", srv_.svc.models_for(who_->tenant)}});
    }


    void send_error(const std::string& id, const ApiError& e) {
        json m = e.body();
        m["type"] = "error";
        m["status"] = e.status;
        m["id"] = id.empty() ? json(nullptr) : json(id);
        send(std::move(m));
    }

    void send(const json& m) {
        if (closed_) return;
        out_.push_back(m.dump(-1, ' ', false, json::error_handler_t::replace));
        if (!writing_) write_next();
    }

    void write_next() {
        if (out_.empty() || closed_) {
            writing_ = false;
            pending_.reset();
            out_.clear();
            return;
        }
        writing_ = true;
        if (!pending_) pending_.emplace(srv_.pending);
        ws_.text(true);
        ws_.async_write(asio::buffer(out_.front()), [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) {
                self->closed_ = true;
                for (auto& [id, flag] : self->inflight_) flag->store(true);
            } else {
                self->out_.pop_front();
            }
            self->write_next();
        });
    }

    websocket::stream<beast::tcp_stream> ws_;
    HttpServer::Impl& srv_;
    beast::flat_buffer in_;
    std::string header_auth_;
    std::optional<Principal> who_;
    std::map<std::string, std::shared_ptr<std::atomic<bool>>> inflight_;
    std::deque<std::string> out_;
    bool writing_ = false;
    bool closed_ = false;
    std::optional<PendingToken> pending_;  // while output is queued, so shutdown waits for it
};

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket socket, HttpServer::Impl& srv) : stream_(std::move(socket)), srv_(srv) {}

    void start() {
        asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_header(); });
    }

private:
    // ---- reading -------------------------------------------------------------------------------------
    void read_header() {
        if (srv_.shutting_down) return close();
        parser_.emplace();
        parser_->header_limit(kMaxHeaderBytes);
        parser_->body_limit(srv_.opts.max_body_bytes);
        stream_.expires_after(srv_.opts.idle_timeout);
        http::async_read_header(stream_, buf_, *parser_,
                                [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
    }

    void on_header(beast::error_code ec) {
        if (ec) return on_read_error(ec);
        auto& req = parser_->get();
        if (auto cl = parser_->content_length(); cl && *cl > srv_.opts.max_body_bytes) {
            keep_alive_ = false;
            return send_error(payload_too_large());
        }
        if (beast::iequals(req[http::field::expect], "100-continue")) send("HTTP/1.1 100 Continue\r\n\r\n");
        stream_.expires_after(srv_.opts.read_timeout);
        http::async_read(stream_, buf_, *parser_,
                         [self = shared_from_this()](beast::error_code ec2, size_t) { self->on_body(ec2); });
    }

    void on_body(beast::error_code ec) {
        if (ec) return on_read_error(ec);
        handle(parser_->release());
    }

    void on_read_error(beast::error_code ec) {
        keep_alive_ = false;
        if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == beast::error::timeout ||
            ec == asio::error::operation_aborted || ec == asio::error::connection_reset) {
            return close();
        }
        received_ = Clock::now();
        if (ec == http::error::body_limit) return send_error(payload_too_large());
        if (ec == http::error::header_limit) {
            return send_error(ApiError::make(431, "invalid_request_error", "request headers too large", "headers_too_large"));
        }
        send_error(ApiError::make(400, "invalid_request_error", "malformed HTTP request: " + ec.message(), "bad_http"));
    }

    ApiError payload_too_large() const {
        return ApiError::make(413, "invalid_request_error",
                            "request body larger than " + std::to_string(srv_.opts.max_body_bytes) + " bytes",
                            "request_too_large");
    }


    // ---- routing -------------------------------------------------------------------------------------
    void handle(http::request<http::string_body> req) {
        received_ = Clock::now();
        keep_alive_ = req.keep_alive() && !srv_.shutting_down;
        std::string_view target(req.target().data(), req.target().size());
        if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
        const auto method = req.method();
        const std::string path(target);

        if (path == "/health") {
            if (method != http::verb::get) return method_not_allowed();
            return send_json(200, json{{"status", srv_.shutting_down ? "shutting_down" : "ok"}});
        }
        if (path == "/v1/ws") {
            if (!websocket::is_upgrade(req))
                return send_error(ApiError::make(400, "invalid_request_error", "/v1/ws expects a WebSocket upgrade", "not_websocket"));
            // The socket now belongs to the WebSocket session; this HTTP session ends here.
            closed_ = true;
            return std::make_shared<WsSession>(std::move(stream_), srv_)->run(std::move(req));
        }
        if (path == "/metrics") {
            if (method != http::verb::get) return method_not_allowed();
            return send_raw(200, "text/plain; version=0.0.4; charset=utf-8", srv_.svc.metrics_text());
        }
        const std::string_view auth(req[http::field::authorization].data(), req[http::field::authorization].size());
        if (path == "/v1/models" || path.starts_with("/v1/models/")) {
            if (method != http::verb::get) return method_not_allowed();
            auto who = srv_.svc.authenticate(auth);
            if (!who.principal) {
                srv_.svc.record_refusal(nullptr, "/v1/models", "", who.error, received_, srv_.svc.new_request_id());
                return send_error(who.error);
            }
            return models(*who.principal, path == "/v1/models" ? std::string() : path.substr(11));
        }
        if (path == "/v1/chat/completions" || path == "/v1/completions") {
            if (method != http::verb::post) return method_not_allowed();
            const Endpoint ep = path == "/v1/chat/completions" ? Endpoint::chat : Endpoint::completions;
            auto who = srv_.svc.authenticate(auth);
            if (!who.principal) {
                srv_.svc.record_refusal(nullptr, endpoint_path(ep), "", who.error, received_, srv_.svc.new_request_id());
                return send_error(who.error);
            }
            return generate(*who.principal, ep, req.body());
        }
        if (path.starts_with("/admin/")) {
            const std::string_view full(req.target().data(), req.target().size());
            const auto q = full.find('?');
            auto r = AdminApi(srv_.svc).handle(std::string_view(req.method_string().data(), req.method_string().size()),
                                               path, q == std::string_view::npos ? std::string_view() : full.substr(q + 1),
                                               req.body(), auth);
            srv_.svc.metrics().request("", "", "/admin", r.status);
            spdlog::info("admin {} {} status={}", std::string(req.method_string()), path, r.status);
            return send_json(r.status, r.body);
        }
        srv_.svc.metrics().request("", "", "other", 404);
        send_error(ApiError::make(404, "invalid_request_error", "unknown route: " + std::string(req.method_string()) + " " + path,
                                "unknown_route"));
    }

    void method_not_allowed() {
        send_error(ApiError::make(405, "invalid_request_error", "method not allowed on this route", "method_not_allowed"));
    }

    void models(const Principal& who, const std::string& one) {
        auto entry = [&](const std::string& name) {
            return json{{"id", name}, {"object", "model"}, {"created", srv_.started_unix}, {"owned_by", "realm"}};
        };
        const auto names = srv_.svc.models_for(who.tenant);
        if (!one.empty()) {
            for (const auto& n : names)
                if (n == one) return send_json(200, entry(n));
            return send_error(ApiError::make(404, "invalid_request_error", "The model '" + one + "' does not exist",
                                           "model_not_found"));
        }
        json data = json::array();
        for (const auto& n : names) data.push_back(entry(n));
        send_json(200, json{{"object", "list"}, {"data", std::move(data)}});
    }

    // ---- generation ----------------------------------------------------------------------------------
    void generate(const Principal& who, Endpoint ep, const std::string& body) {
        auto prep = srv_.svc.prepare(who, ep, body);
        if (!prep.job) return send_error(prep.error);
        const Job& job = *prep.job;
        chat_ = ep == Endpoint::chat;
        stream_mode_ = job.stream;
        include_usage_ = job.include_usage;
        id_ = job.id;
        created_ = job.created;
        model_ = job.model;
        role_sent_.assign(job.n, false);
        sse_started_ = false;
        cancel_ = std::make_shared<std::atomic<bool>>(false);
        pending_.emplace(srv_.pending);
        generating_ = true;
        stream_.expires_never();
        start_monitor();

        auto self = shared_from_this();
        auto ex = stream_.get_executor();
        GenerateHandlers h;
        h.on_text = [self, ex](uint32_t i, std::string_view text) {
            asio::post(ex, [self, i, t = std::string(text)] { self->on_text(i, t); });
        };
        h.on_done = [self, ex](json resp) {
            asio::post(ex, [self, r = std::move(resp)]() mutable { self->on_done(std::move(r)); });
        };
        h.on_error = [self, ex](const ApiError& e) { asio::post(ex, [self, e] { self->on_gen_error(e); }); };
        srv_.svc.submit(std::move(*prep.job), std::move(h), cancel_);
    }

    json chunk_base() const {
        json c = {{"id", id_},
                  {"object", chat_ ? "chat.completion.chunk" : "text_completion"},
                  {"created", created_},
                  {"model", model_},
                  {"system_fingerprint", "realm"}};
        if (include_usage_) c["usage"] = nullptr;
        return c;
    }

    json choice_chunk(uint32_t i, json delta_or_text, json finish) const {
        json c = chunk_base();
        json ch = {{"index", i}, {"logprobs", nullptr}, {"finish_reason", std::move(finish)}};
        if (chat_) ch["delta"] = std::move(delta_or_text);
        else ch["text"] = std::move(delta_or_text);
        c["choices"] = json::array({std::move(ch)});
        return c;
    }

    void start_sse() {
        if (sse_started_) return;
        sse_started_ = true;
        send("HTTP/1.1 200 OK\r\nServer: realm\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
             "X-Request-Id: " + id_ + "\r\nTransfer-Encoding: chunked\r\nConnection: " +
             (keep_alive_ ? "keep-alive" : "close") + "\r\n\r\n");
    }

    void send_event(const std::string& data) {
        const std::string ev = "data: " + data + "\n\n";
        send(to_hex(ev.size()) + "\r\n" + ev + "\r\n");
    }

    void send_role_if_needed(uint32_t i) {
        if (!chat_ || i >= role_sent_.size() || role_sent_[i]) return;
        role_sent_[i] = true;
        send_event(dump(choice_chunk(i, json{{"role", "assistant"}, {"content", ""}}, nullptr)));
    }

    void on_text(uint32_t i, const std::string& text) {
        if (peer_gone_ || !stream_mode_ || !generating_) return;
        start_sse();
        send_role_if_needed(i);
        send_event(dump(choice_chunk(i, chat_ ? json{{"content", text}} : json(text), nullptr)));
    }

    void on_done(json resp) {
        generating_ = false;
        if (peer_gone_) return end_generation_response();
        if (!stream_mode_) return send_json(200, resp);
        start_sse();
        const auto& choices = resp["choices"];
        for (uint32_t i = 0; i < choices.size(); ++i) {
            send_role_if_needed(i);
            json finish = choices[i].contains("finish_reason") ? choices[i]["finish_reason"] : json(nullptr);
            send_event(dump(choice_chunk(i, chat_ ? json::object() : json(""), std::move(finish))));
        }
        if (include_usage_) {
            json c = chunk_base();
            c["choices"] = json::array();
            c["usage"] = resp["usage"];
            send_event(dump(c));
        }
        end_sse();
    }

    void on_gen_error(const ApiError& e) {
        generating_ = false;
        if (peer_gone_) return end_generation_response();
        if (!sse_started_) return send_error(e);
        // The status line is gone: the error travels as an event, as OpenAI's streams carry them.
        send_event(dump(e.body()));
        end_sse();
    }

    void end_sse() {
        send_event("[DONE]");
        send("0\r\n\r\n");
        response_done_ = true;
        if (!writing_) write_next();
    }

    // The client went away mid-generation; the generation has now ended.
    void end_generation_response() {
        pending_.reset();
        close();
    }

    // ---- watching the client while a request runs ---------------------------------------------------
    void start_monitor() {
        if (buf_.size() >= kMaxPipelinedBytes || monitor_pending_) return;
        monitor_pending_ = true;
        stream_.async_read_some(buf_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
            self->on_monitor(ec, n);
        });
    }

    void on_monitor(beast::error_code ec, size_t n) {
        monitor_pending_ = false;
        if (!ec) {
            buf_.commit(n);  // a pipelined request: kept for the next read
            if (resume_read_) {
                resume_read_ = false;
                return read_header();
            }
            if (generating_) start_monitor();
            return;
        }
        if (ec == asio::error::operation_aborted) {
            if (resume_read_) {
                resume_read_ = false;
                read_header();
            }
            return;
        }
        // EOF or reset: the client is gone. Stop its generation; the engine frees the sequence at its next step.
        peer_gone_ = true;
        resume_read_ = false;
        if (cancel_) cancel_->store(true);
        if (!generating_ && !writing_) close();
    }

    // ---- writing -------------------------------------------------------------------------------------
    std::string head(int status, std::string_view content_type, size_t length, const std::string& extra) const {
        std::string h = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\nServer: realm\r\n";
        h += "Content-Type: ";
        h += content_type;
        h += "\r\nContent-Length: " + std::to_string(length) + "\r\nConnection: ";
        h += keep_alive_ ? "keep-alive" : "close";
        h += "\r\n" + extra + "\r\n";
        return h;
    }

    void send_raw(int status, std::string_view content_type, const std::string& body, const std::string& extra = {}) {
        stream_.expires_after(srv_.opts.read_timeout);
        send(head(status, content_type, body.size(), extra) + body);
        response_done_ = true;
        if (!writing_) write_next();
    }

    void send_json(int status, const json& j, const std::string& extra = {}) {
        std::string x = extra;
        if (!id_.empty() && status == 200) x += "X-Request-Id: " + id_ + "\r\n";
        send_raw(status, "application/json", dump(j), x);
    }

    void send_error(const ApiError& e) {
        std::string extra;
        if (e.retry_after > 0) extra += "Retry-After: " + std::to_string(e.retry_after) + "\r\n";
        if (e.status == 413 || e.status == 431 || (e.status == 400 && e.code == "bad_http")) keep_alive_ = false;
        send_raw(e.status, "application/json", dump(e.body()), extra);
    }

    void send(std::string s) {
        if (peer_gone_) return;
        out_bytes_ += s.size();
        out_.push_back(std::move(s));
        if (out_bytes_ > kMaxPendingOutput) {
            peer_gone_ = true;
            if (cancel_) cancel_->store(true);
            out_.clear();
            out_bytes_ = 0;
            if (!generating_) close();
            return;
        }
        if (!writing_) write_next();
    }

    void write_next() {
        if (out_.empty()) {
            writing_ = false;
            if (response_done_) finish_response();
            return;
        }
        writing_ = true;
        asio::async_write(stream_, asio::buffer(out_.front()),
                          [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); });
    }

    void on_write(beast::error_code ec) {
        if (ec) {
            writing_ = false;
            peer_gone_ = true;
            out_.clear();
            out_bytes_ = 0;
            if (cancel_) cancel_->store(true);
            if (!generating_) {
                pending_.reset();
                close();
            }
            return;
        }
        out_bytes_ -= out_.front().size();
        out_.pop_front();
        write_next();
    }

    void finish_response() {
        response_done_ = false;
        pending_.reset();
        id_.clear();
        cancel_.reset();
        if (!keep_alive_ || peer_gone_ || srv_.shutting_down) return close();
        if (monitor_pending_) {
            resume_read_ = true;
            beast::error_code ec;
            stream_.socket().cancel(ec);
            return;
        }
        read_header();
    }

    void close() {
        if (closed_) return;
        closed_ = true;
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        stream_.socket().close(ec);
    }

    beast::tcp_stream stream_;
    HttpServer::Impl& srv_;
    beast::flat_buffer buf_;
    std::optional<http::request_parser<http::string_body>> parser_;
    Clock::time_point received_;
    bool keep_alive_ = true;
    bool closed_ = false;

    std::deque<std::string> out_;
    size_t out_bytes_ = 0;
    bool writing_ = false;
    bool response_done_ = false;  // the last bytes of the current response are queued

    // The running generation.
    std::shared_ptr<std::atomic<bool>> cancel_;
    std::optional<PendingToken> pending_;
    bool generating_ = false;
    bool monitor_pending_ = false;
    bool resume_read_ = false;
    bool peer_gone_ = false;
    bool chat_ = true, stream_mode_ = false, include_usage_ = false, sse_started_ = false;
    std::string id_, model_;
    int64_t created_ = 0;
    std::vector<bool> role_sent_;
};

}  // namespace

void HttpServer::Impl::accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
        if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
            spdlog::warn("accept: {}", ec.message());
        } else {
            beast::error_code nd;
            socket.set_option(tcp::no_delay(true), nd);
            std::make_shared<Session>(std::move(socket), *this)->start();
        }
        if (acceptor.is_open()) accept();
    });
}

void HttpServer::Impl::on_signal() {
    if (shutting_down.exchange(true)) return;
    spdlog::info("shutting down: {} request(s) in flight, grace period {} s", svc.in_flight(), opts.shutdown_grace.count());
    beast::error_code ec;
    acceptor.close(ec);
    svc.stop_accepting();
    shutdown_started = Clock::now();
    poll_shutdown();
}

void HttpServer::Impl::poll_shutdown() {
    const auto elapsed = Clock::now() - shutdown_started;
    if (svc.in_flight() == 0 && pending.load() == 0) {
        ioc.stop();
        return;
    }
    if (!cancelled_all && elapsed >= opts.shutdown_grace) {
        cancelled_all = true;
        spdlog::info("grace period over: cancelling {} request(s)", svc.in_flight());
        svc.cancel_all();
    }
    // Writes to clients that stopped reading cannot hold the process forever.
    if (elapsed >= opts.shutdown_grace + std::chrono::seconds(10) && svc.in_flight() == 0) {
        ioc.stop();
        return;
    }
    poll.expires_after(std::chrono::milliseconds(50));
    poll.async_wait([this](beast::error_code ec) {
        if (!ec) poll_shutdown();
    });
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() = default;

Result<std::unique_ptr<HttpServer>> HttpServer::create(Service& service, const HttpOptions& opts) {
    auto impl = std::make_unique<Impl>(service, opts);
    beast::error_code ec;
    const auto addr = asio::ip::make_address(opts.host, ec);
    if (ec) return make_error("invalid --host '" + opts.host + "': " + ec.message());
    const tcp::endpoint ep(addr, opts.port);
    impl->acceptor.open(ep.protocol(), ec);
    if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) impl->acceptor.bind(ep, ec);
    if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return make_error("cannot listen on " + opts.host + ":" + std::to_string(opts.port) + ": " + ec.message());
    impl->started_unix =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

uint16_t HttpServer::port() const {
    beast::error_code ec;
    const auto ep = impl_->acceptor.local_endpoint(ec);
    return ec ? 0 : ep.port();
}

void HttpServer::run() {
    Impl& s = *impl_;
    s.signals.async_wait([&s](beast::error_code ec, int) {
        if (!ec) s.on_signal();
    });
    s.accept();
    std::vector<std::thread> threads;
    const uint32_t n = std::max<uint32_t>(1, s.opts.io_threads);
    for (uint32_t i = 1; i < n; ++i) threads.emplace_back([&s] { s.ioc.run(); });
    s.ioc.run();
    for (auto& t : threads) t.join();
    // Callbacks of requests still running would post to this io_context: wait for them to end first.
    s.svc.cancel_all();
    while (s.svc.in_flight() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    spdlog::info("server stopped");
}

}  // namespace realm::server
