"""`realm serve` end to end: the real server on a loopback port, driven by the official `openai` package.

Tenants and keys are made with the `realm tenant` / `realm key` commands on the server's own database while it
runs (the server reads tenants per request). Generation is greedy and short: the binary is the ASan build.
"""
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

SYSTEM = "You are a helpful assistant."
ADMIN_KEY = "test-admin-key-0123456789"


class Server:
    """One `realm serve` process on 127.0.0.1:<free port> with its own data directory."""

    def __init__(self, realm_bin: Path, data_dir: Path, models: dict, *extra: str):
        self.realm_bin = realm_bin
        self.data_dir = data_dir
        self.db = data_dir / "realm.db"
        self.log = open(data_dir / "server.log", "w")
        args = [str(realm_bin), "serve", "--port", "0", "--data-dir", str(data_dir), "-t", "2", *extra]
        for name, path in models.items():
            args += ["--model", f"{name}={path}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.default_key = None
        deadline = time.time() + 300
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"realm serve exited ({self.proc.wait()}):\n{self.read_log()}")
            if m := re.match(r"\s+(rlm_\S+)$", line):
                self.default_key = m.group(1)
            if m := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
                self.port = int(m.group(1))
                break
        else:
            raise AssertionError("realm serve did not start")
        self.base = f"http://127.0.0.1:{self.port}"

    def read_log(self) -> str:
        self.log.flush()
        return (self.data_dir / "server.log").read_text(errors="replace")

    def cli(self, *args, check=True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.realm_bin), *map(str, args), "--db", str(self.db)],
                              capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"realm {' '.join(map(str, args))}: {proc.stderr}")
        return proc

    def tenant(self, name: str, *flags: str) -> str:
        """Adds a tenant and returns a new API key of it."""
        self.cli("tenant", "add", name, *flags)
        return self.cli("key", "create", name).stdout.strip()

    def client(self, key: str, timeout: float = 600) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key, max_retries=0, timeout=timeout)

    def raw(self, method: str, path: str, body=None, headers=None) -> tuple:
        """(status, headers, body bytes) of one request over a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def metrics(self) -> str:
        status, _, body = self.raw("GET", "/metrics")
        assert status == 200
        return body.decode()

    def metric(self, name: str) -> float:
        """The sum of a metric over its label sets."""
        values = re.findall(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", self.metrics(), re.M)
        assert values, f"{name} not in /metrics"
        return sum(map(float, values))

    def stop(self, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.close()


@pytest.fixture(scope="module")
def server(realm_bin, models, tmp_path_factory):
    srv = Server(realm_bin, tmp_path_factory.mktemp("serve"),
                 {"smollm2": models["smollm2"], "stories": models["stories"]},
                 "--max-concurrent", "16", "--max-body-bytes", "200000", "--admin-key", ADMIN_KEY)
    yield srv
    rc = srv.stop()
    assert rc == 0, srv.read_log()[-4000:]


def chat(client, question, **kw):
    return client.chat.completions.create(
        model=kw.pop("model", "smollm2"),
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        temperature=0, **kw)


def test_health_needs_no_key(server):
    status, _, body = server.raw("GET", "/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_default_tenant_key_printed_once_and_paris(server):
    assert server.default_key and server.default_key.startswith("rlm_")
    r = chat(server.client(server.default_key), "What is the capital of France?", max_tokens=24)
    assert "Paris" in r.choices[0].message.content
    assert r.object == "chat.completion" and r.model == "smollm2" and r.id.startswith("chatcmpl-")
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_models(server):
    key_a = server.tenant("models-a", "--models", "smollm2")
    assert [m.id for m in server.client(server.default_key).models.list()] == ["smollm2", "stories"]
    client = server.client(key_a)
    assert [m.id for m in client.models.list()] == ["smollm2"]
    assert client.models.retrieve("smollm2").id == "smollm2"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("stories")


def test_weights_flags(server, realm_bin, models, tmp_path):
    """`--weights copy` / `--no-repack`: the server reads SmolLM2's matrices from a private copy or from the
    file's mapping (its log says how much it copied) and answers exactly as the default server does."""
    want = chat(server.client(server.default_key), "What is the capital of France?", max_tokens=8)
    assert re.search(r"model smollm2 = \S+ \(0\.0 MiB of weights copied at load, --weights rows16\)", server.read_log())
    for extra, copied in ((["--weights", "copy"], r"[1-9]\d*\.\d"), (["--no-repack"], r"0\.0")):
        data = tmp_path / extra[-1].strip("-")
        data.mkdir()
        srv = Server(realm_bin, data, {"smollm2": models["smollm2"]}, *extra)
        try:
            name = "file" if extra == ["--no-repack"] else extra[-1]
            assert re.search(rf"model smollm2 = \S+ \({copied} MiB of weights copied at load, --weights {name}\)",
                             srv.read_log()), srv.read_log()
            got = chat(srv.client(srv.default_key), "What is the capital of France?", max_tokens=8)
            assert got.choices[0].message.content == want.choices[0].message.content
        finally:
            assert srv.stop() == 0, srv.read_log()[-4000:]


def test_chat_stream_equals_non_stream_with_usage(server):
    client = server.client(server.default_key)
    full = chat(client, "Name three colors.", max_tokens=12)
    chunks = list(chat(client, "Name three colors.", max_tokens=12, stream=True,
                       stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)


def test_completions_stream_n_seed_stop(server):
    client = server.client(server.default_key)
    full = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert full.object == "text_completion" and full.choices[0].text
    streamed = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=8,
                                         temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == full.choices[0].text

    two = client.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=6, n=2, seed=7,
                                    temperature=1.0)
    assert [c.index for c in two.choices] == [0, 1]
    again = client.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=6, n=2, seed=7,
                                      temperature=1.0)
    assert [c.text for c in again.choices] == [c.text for c in two.choices]

    stop_at = full.choices[0].text.strip().split(" ")[0]
    cut = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=8,
                                    temperature=0, stop=[stop_at])
    assert stop_at not in cut.choices[0].text and cut.choices[0].finish_reason == "stop"


def test_auth_errors(server):
    key_a = server.tenant("auth-a", "--models", "smollm2")
    server.tenant("auth-b", "--models", "stories")
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

    status, _, raw = server.raw("POST", "/v1/chat/completions", body)
    assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        chat(server.client("rlm_0123456789abcdef_" + "0" * 64), "hi", max_tokens=2)
    with pytest.raises(openai.AuthenticationError):
        chat(server.client("not-a-key"), "hi", max_tokens=2)

    revoked = server.cli("key", "create", "auth-a").stdout.strip()
    keys = json.loads(server.cli("key", "list", "auth-a", "--json").stdout)
    key_id = [k["id"] for k in keys if revoked.startswith("rlm_" + k["prefix"])][0]
    assert chat(server.client(revoked), "hi", max_tokens=2).choices
    server.cli("key", "revoke", key_id)
    with pytest.raises(openai.AuthenticationError):
        chat(server.client(revoked), "hi", max_tokens=2)

    # Tenant A's key on the model only B may use.
    with pytest.raises(openai.PermissionDeniedError) as e:
        server.client(key_a).completions.create(model="stories", prompt="Once", max_tokens=2)
    assert e.value.status_code == 403
    with pytest.raises(openai.NotFoundError) as e:
        chat(server.client(key_a), "hi", model="no-such-model", max_tokens=2)
    assert e.value.body["code"] == "model_not_found"

    rows = json.loads(server.cli("usage", "auth-a", "--json").stdout)["rows"]
    assert {r["status"] for r in rows} >= {200, 403, 404}


def test_malformed_requests(server):
    key = server.tenant("bad", "--models", "*", "--max-tokens", "64")
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def error(path, body, status, method="POST"):
        got, headers, raw = server.raw(method, path, body, auth)
        assert got == status, raw
        err = json.loads(raw)["error"]
        assert err["message"] and err["type"]
        return err

    error("/v1/chat/completions", "{not json", 400)
    error("/v1/chat/completions", "[1, 2]", 400)
    error("/v1/chat/completions", b'{"model": "smollm2", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400)
    error("/v1/chat/completions", {"model": "smollm2"}, 400)
    error("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, 400)
    error("/v1/completions", {"model": "smollm2", "prompt": 5}, 400)
    assert error("/v1/chat/completions", {"model": "smollm2", "messages": [{"role": "user", "content": "x"}],
                                          "max_tokens": 65}, 400)["param"] == "max_tokens"
    error("/v1/chat/completions", {"model": "smollm2", "messages": [{"role": "user", "content": "x"}],
                                   "temperature": -1}, 400)
    error("/v1/chat/completions", {"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "n": 0}, 400)
    error("/v1/chat/completions", {"model": "smollm2", "messages": [{"role": "user", "content": "x" * 300000}]}, 413)
    error("/v1/nothing-here", {}, 404)
    error("/v1/chat/completions", None, 405, method="GET")
    with pytest.raises(openai.BadRequestError):
        chat(server.client(key), "x", max_tokens=1000)
    # The server keeps serving after all of that.
    assert chat(server.client(key), "Say hi.", max_tokens=2).choices[0].message.content


def test_rate_limit(server):
    key = server.tenant("limited", "--models", "smollm2", "--rpm", "2")
    client = server.client(key)
    chat(client, "hi", max_tokens=1)
    chat(client, "hi", max_tokens=1)
    with pytest.raises(openai.RateLimitError):
        chat(client, "hi", max_tokens=1)
    status, headers, raw = server.raw("POST", "/v1/chat/completions",
                                      {"model": "smollm2", "messages": [{"role": "user", "content": "x"}]},
                                      {"Authorization": f"Bearer {key}"})
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert json.loads(raw)["error"]["code"] == "rate_limit_exceeded"
    assert re.search(r'realm_rate_limited_total\{limit="requests_per_minute",tenant="limited"\} 2', server.metrics())


def test_cancel_by_closing_the_stream(server):
    key = server.tenant("cancel", "--models", "smollm2")
    stream = server.client(key).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
        max_tokens=400, temperature=0, stream=True)
    got = 0
    for chunk in stream:
        got += 1
        if got == 3:
            break
    stream.close()
    deadline = time.time() + 60
    while time.time() < deadline and server.metric("realm_running_sequences") != 0:
        time.sleep(0.1)
    assert server.metric("realm_running_sequences") == 0
    rows = json.loads(server.cli("usage", "cancel", "--json").stdout)["rows"]
    assert rows[0]["status"] == 499 and rows[0]["completion_tokens"] < 400


def test_cancel_non_streaming_request_on_disconnect(server):
    import socket

    key = server.tenant("cancel2", "--models", "smollm2")
    body = json.dumps({"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 400,
                       "temperature": 0}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode() +
                 b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                 b"\r\n\r\n" + body)
    deadline = time.time() + 60
    while time.time() < deadline and server.metric("realm_running_sequences") == 0:
        time.sleep(0.02)
    sock.close()
    while time.time() < deadline and server.metric("realm_running_sequences") != 0:
        time.sleep(0.05)
    assert server.metric("realm_running_sequences") == 0
    rows = json.loads(server.cli("usage", "cancel2", "--json").stdout)["rows"]
    assert rows[0]["status"] == 499 and rows[0]["completion_tokens"] < 400


def test_16_streams_from_4_tenants_equal_sequential(server):
    keys = [server.tenant(f"par{t}", "--models", "smollm2", "--rpm", "0", "--concurrency", "8") for t in range(4)]
    jobs = [(keys[i % 4], f"Give me one word that rhymes with {w}.")
            for i, w in enumerate(["cat", "dog", "sun", "tree", "blue", "car", "star", "ball",
                                   "rain", "light", "cake", "moon", "bird", "fish", "hat", "bee"])]

    def run_stream(job):
        key, q = job
        chunks = list(chat(server.client(key), q, max_tokens=8, stream=True))
        assert len({c.id for c in chunks}) == 1
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    sequential = [chat(server.client(k), q, max_tokens=8).choices[0].message.content for k, q in jobs]
    with ThreadPoolExecutor(16) as pool:
        parallel = list(pool.map(run_stream, jobs))
    assert parallel == sequential


def test_metrics(server):
    text = server.metrics()
    for name in ["realm_requests_total", "realm_prompt_tokens_total", "realm_completion_tokens_total",
                 "realm_time_to_first_token_seconds_bucket", "realm_time_per_output_token_seconds_bucket",
                 "realm_request_duration_seconds_bucket", "realm_queue_length", "realm_running_sequences",
                 "realm_kv_cache_bytes"]:
        assert re.search(rf"^{name}", text, re.M), name
    assert re.search(r'realm_requests_total\{endpoint="/v1/chat/completions",model="smollm2",status="200",'
                     r'tenant="default"\} \d+', text)


def test_graceful_shutdown_finishes_streams(realm_bin, models, tmp_path):
    srv = Server(realm_bin, tmp_path, {"smollm2": models["smollm2"]}, "--shutdown-grace", "60")
    client = srv.client(srv.default_key)
    done = {}

    def consume():
        chunks = list(chat(client, "Count from one to ten.", max_tokens=16, stream=True))
        done["finish"] = chunks[-1].choices[0].finish_reason
        done["text"] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    t = threading.Thread(target=consume)
    t.start()
    deadline = time.time() + 120
    while time.time() < deadline and srv.metric("realm_running_sequences") == 0 and t.is_alive():
        time.sleep(0.05)
    assert srv.stop() == 0, srv.read_log()[-4000:]
    t.join(60)
    assert done.get("finish") in ("stop", "length") and done["text"]
    with pytest.raises(openai.APIConnectionError):
        chat(client, "hi", max_tokens=1)


def test_websocket(server):
    import websocket

    key = server.tenant("ws", "--models", "smollm2")
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/v1/ws", timeout=600)
    try:
        def recv():
            return json.loads(ws.recv())

        ws.send(json.dumps({"type": "generate", "id": "early", "request": {"model": "smollm2", "messages": []}}))
        m = recv()
        assert m["type"] == "error" and m["id"] == "early" and m["status"] == 401
        ws.send(json.dumps({"type": "auth", "api_key": "rlm_wrong"}))
        assert recv()["status"] == 401
        ws.send(json.dumps({"type": "auth", "api_key": key}))
        assert recv() == {"type": "authenticated", "tenant": "ws", "models": ["smollm2"]}

        paris = {"model": "smollm2", "temperature": 0, "max_tokens": 24,
                 "messages": [{"role": "system", "content": SYSTEM},
                              {"role": "user", "content": "What is the capital of France?"}]}
        ws.send(json.dumps({"type": "generate", "id": "p", "request": paris}))
        ws.send(json.dumps({"type": "generate", "id": "long", "endpoint": "completions",
                            "request": {"model": "smollm2", "prompt": "Once upon a time", "temperature": 0,
                                        "max_tokens": 400}}))
        ws.send(json.dumps({"type": "generate", "id": "bad", "request": {"model": "smollm2", "messages": "x"}}))
        ws.send("not json")
        texts, final, errors, cancel_sent = {"p": "", "long": ""}, {}, [], False
        # A cancelled request ends with "done" (finish_reason "cancelled") or an error with status 499.
        while len(final) < 2:
            m = recv()
            if m["type"] == "error" and m["id"] == "long":
                final["long"] = m
            elif m["type"] == "chunk":
                texts[m["id"]] += m["text"]
                if m["id"] == "long" and not cancel_sent:
                    ws.send(json.dumps({"type": "cancel", "id": "long"}))
                    cancel_sent = True
            elif m["type"] == "done":
                final[m["id"]] = m
            else:
                errors.append(m)
        assert {(e["id"], e["status"]) for e in errors} == {("bad", 400), (None, 400)}
        answer = final["p"]["response"]
        assert "Paris" in answer["choices"][0]["message"]["content"]
        assert texts["p"] == answer["choices"][0]["message"]["content"]
        assert answer["usage"]["completion_tokens"] > 0
        if final["long"]["type"] == "done":
            assert final["long"]["response"]["choices"][0]["finish_reason"] == "cancelled"
            assert final["long"]["response"]["usage"]["completion_tokens"] < 400
        else:
            assert final["long"]["status"] == 499
        ws.send(json.dumps({"type": "cancel", "id": "long"}))
        assert recv()["status"] == 404
    finally:
        ws.close()
    http_status, _, _ = server.raw("GET", "/v1/ws")
    assert http_status == 400


def test_admin_api(server, realm_bin):
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def call(method, path, body=None, headers=admin):
        status, _, raw = server.raw(method, path, body, headers)
        return status, json.loads(raw)

    assert call("GET", "/admin/tenants", headers={})[0] == 401
    assert call("GET", "/admin/tenants", headers={"Authorization": "Bearer " + server.default_key})[0] == 401
    status, t = call("POST", "/admin/tenants", {"name": "adm", "models": ["smollm2"],
                                                  "limits": {"requests_per_minute": 100, "max_tokens_per_request": 16}})
    assert status == 201 and t["models"] == ["smollm2"] and t["limits"]["max_tokens_per_request"] == 16
    assert call("POST", "/admin/tenants", {"name": "adm"})[0] == 409
    assert call("POST", "/admin/tenants", {"name": "bad name!"})[0] == 400
    assert call("POST", "/admin/tenants", {"name": "x", "limits": {"max_concurrent": -1}})[0] == 400
    assert "adm" in [t["name"] for t in call("GET", "/admin/tenants")[1]["tenants"]]

    status, k = call("POST", "/admin/tenants/adm/keys", {"label": "ci"})
    assert status == 201 and k["secret"].startswith("rlm_") and k["key"]["label"] == "ci"
    client = server.client(k["secret"])
    assert chat(client, "Say hi.", max_tokens=2).choices
    with pytest.raises(openai.BadRequestError):
        chat(client, "Say hi.", max_tokens=17)
    status, t = call("PATCH", "/admin/tenants/adm", {"limits": {"max_tokens_per_request": 32}})
    assert status == 200 and t["limits"]["max_tokens_per_request"] == 32 and t["limits"]["requests_per_minute"] == 100
    assert chat(client, "Say hi.", max_tokens=17).choices

    keys = call("GET", "/admin/keys?tenant=adm")[1]["keys"]
    assert [x["id"] for x in keys] == [k["key"]["id"]] and "secret" not in keys[0]
    assert call("DELETE", f"/admin/keys/{k['key']['id']}")[0] == 200
    with pytest.raises(openai.AuthenticationError):
        chat(client, "Say hi.", max_tokens=2)
    assert call("DELETE", "/admin/keys/999999")[0] == 404

    guest = Path(realm_bin).resolve().parents[2] / "guests" / "default.wasm"
    status, g = call("PUT", "/admin/tenants/adm/guest", guest.read_bytes())
    assert status == 200 and len(g["sha256"]) == 64
    assert call("PUT", "/admin/tenants/adm/guest", b"\0asm broken")[0] == 400
    assert call("GET", "/admin/tenants/adm")[1]["guest"] == g["sha256"]
    key2 = call("POST", "/admin/tenants/adm/keys")[1]["secret"]
    assert "Paris" in chat(server.client(key2), "What is the capital of France?", max_tokens=24).choices[0].message.content
    assert call("DELETE", "/admin/tenants/adm/guest")[0] == 200

    usage = call("GET", "/admin/usage?tenant=adm&limit=5")[1]
    assert usage["rows"] and usage["totals"]["requests"] >= 3
    assert call("DELETE", "/admin/tenants/adm")[0] == 200
    assert call("GET", "/admin/tenants/adm")[0] == 404
    assert call("GET", "/admin/nothing")[0] == 404


def test_shutdown_after_grace_ends_streams_cleanly(realm_bin, models, tmp_path):
    srv = Server(realm_bin, tmp_path, {"smollm2": models["smollm2"]}, "--shutdown-grace", "1")
    stream = srv.client(srv.default_key).completions.create(
        model="smollm2", prompt="Once upon a time", max_tokens=2000, temperature=0, stream=True)
    chunks = iter(stream)
    first = next(chunks)
    assert srv.stop() == 0, srv.read_log()[-4000:]
    # The stream ends with a final chunk (or an error event) and [DONE] instead of breaking off.
    try:
        rest = list(chunks)
        assert rest[-1].choices[0].finish_reason == "cancelled" and len(rest) + 1 < 2000
    except openai.APIError as e:
        assert "shutting down" in str(e)
    assert first.choices[0].text is not None
