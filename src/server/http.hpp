// The HTTP front end (Boost.Beast over Asio): the OpenAI-compatible API with server-sent events, /health,
// /metrics. A few I/O threads run every connection; generations run on the Service's workers and post
// their output back to the connection's strand. A client that goes away (EOF or a write error) cancels its
// request. SIGINT/SIGTERM: stop accepting, let in-flight requests finish within the grace period, then
// cancel the rest (streams still end with their final chunk and `data: [DONE]`).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "gguf/result.hpp"
#include "server/service.hpp"

namespace realm::server {

struct HttpOptions {
    std::string host = "127.0.0.1";
    uint16_t port = 8080;                       // 0: any free port (see HttpServer::port)
    uint64_t max_body_bytes = 4ull << 20;       // larger bodies: 413
    std::chrono::seconds read_timeout{30};      // to read one request once its first byte arrived
    std::chrono::seconds idle_timeout{120};     // keep-alive connections with no request are closed
    std::chrono::seconds shutdown_grace{10};    // in-flight requests may finish within this
    uint32_t io_threads = 2;
};

class HttpServer {
public:
    // Binds and listens (errors: address in use, bad host, ...). Serving starts with run().
    static Result<std::unique_ptr<HttpServer>> create(Service& service, const HttpOptions& opts);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    uint16_t port() const;
    // Serves until SIGINT or SIGTERM, then shuts down gracefully; returns once every request has ended.
    void run();

    struct Impl;

private:
    explicit HttpServer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace realm::server
