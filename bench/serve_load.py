#!/usr/bin/env python3
"""Load generator for any OpenAI-compatible server: N concurrent streaming clients.

For each concurrency level N and each repetition, N clients start together (a barrier) and each sends
--requests streaming requests one after another (/v1/chat/completions or /v1/completions, temperature 0),
each prompt made unique by a serial number in front (no prompt-cache hits).
Per request it records the time to first token (first non-empty content chunk) and the tokens received:
the server's final `usage.completion_tokens` when it sends one (stream_options.include_usage), else the
number of non-empty content chunks. Reported per N, as medians over the repetitions:
  aggregate tok/s  = all completion tokens of the repetition / its wall time (first send to last byte)
  TTFT             = median time to first token over the repetition's requests
  per-stream tok/s = median over requests of (tokens - 1) / (last token time - first token time)

Usage: bench/serve_load.py --url http://127.0.0.1:8080 [--api-key KEY] [--model NAME]
                           [--endpoint chat|completions] [-c 1 4 8 16] [--max-tokens 128] [--reps 3]
Standard library only.
"""

import argparse
import http.client
import itertools
import json
import statistics
import sys
import threading
import time
import urllib.parse

DEFAULT_PROMPTS = [
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how a steam engine works, step by step.",
    "Describe the water cycle to a ten-year-old, with many examples.",
    "Write a detailed travel guide for a weekend in Lisbon.",
    "List and explain twenty common kitchen herbs and how to use them.",
    "Tell the history of the printing press and its effects on Europe.",
    "Write a long poem about the sea in winter.",
    "Explain how to plan a vegetable garden, month by month.",
    "Describe how a computer executes a program, from source code to electrons.",
    "Write a letter from a sailor to his family, describing a long voyage.",
    "Explain the rules of chess and give advice for beginners.",
    "Describe a day in the life of a medieval blacksmith.",
    "Write a detailed recipe for bread, with explanations for every step.",
    "Explain why the sky is blue and why sunsets are red.",
    "Write a long fairy tale about a fox and a clever crow.",
    "Describe the solar system planet by planet.",
]


# Every request gets a distinct prompt (a serial number in front), so that no server can answer from a
# prompt cache filled by the warm-up or an earlier repetition: each measures a full prompt evaluation.
_serial = itertools.count(1)
_serial_lock = threading.Lock()


def unique(prompt):
    with _serial_lock:
        n = next(_serial)
    return f"[request {n}] {prompt}"


class Endpoint:
    def __init__(self, url, api_key, model, kind, max_tokens, extra):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"bad base URL '{url}' (expected http://host:port)")
        self.https = u.scheme == "https"
        self.host, self.port = u.hostname, u.port or (443 if self.https else 80)
        self.prefix = u.path.rstrip("/")
        if not self.prefix.endswith("/v1"):
            self.prefix += "/v1"
        self.api_key, self.model, self.kind = api_key, model, kind
        self.max_tokens, self.extra = max_tokens, extra

    def connect(self, timeout):
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=timeout)

    def headers(self):
        h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def body(self, prompt):
        b = {"model": self.model, "max_tokens": self.max_tokens, "temperature": 0, "stream": True,
             "stream_options": {"include_usage": True}}
        if self.kind == "chat":
            b["messages"] = [{"role": "user", "content": prompt}]
        else:
            b["prompt"] = prompt
        b.update(self.extra)
        return json.dumps(b)

    def path(self):
        return self.prefix + ("/chat/completions" if self.kind == "chat" else "/completions")

    def content(self, chunk):
        choices = chunk.get("choices") or []
        if not choices:
            return ""
        c = choices[0]
        if self.kind == "chat":
            return (c.get("delta") or {}).get("content") or ""
        return c.get("text") or ""


def one_request(ep, prompt, timeout):
    """Sends one streaming request; returns a dict of timings and counts (or raises)."""
    conn = ep.connect(timeout)
    try:
        t0 = time.perf_counter()
        conn.request("POST", ep.path(), body=ep.body(prompt), headers=ep.headers())
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read(2000).decode('utf-8', 'replace')}")
        chunks, usage, t_first, t_last = 0, None, None, None
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            msg = json.loads(data)
            if "error" in msg:
                raise RuntimeError(f"server error in stream: {msg['error']}")
            if msg.get("usage"):
                usage = msg["usage"].get("completion_tokens")
            if ep.content(msg):
                now = time.perf_counter()
                if t_first is None:
                    t_first = now
                t_last = now
                chunks += 1
        t_end = time.perf_counter()
    finally:
        conn.close()
    tokens = usage if usage is not None else chunks
    return {"tokens": tokens, "chunks": chunks, "from_usage": usage is not None, "start": t0, "end": t_end,
            "ttft": (t_first - t0) if t_first is not None else None,
            "stream_tps": (chunks - 1) / (t_last - t_first) if chunks > 1 and t_last > t_first else None}


def run_level(ep, n, requests, prompts, rep, timeout):
    barrier = threading.Barrier(n)
    results, errors = [], []
    lock = threading.Lock()

    def client(i):
        barrier.wait()
        for k in range(requests):
            prompt = prompts[(i + k * n + rep) % len(prompts)]
            try:
                r = one_request(ep, unique(prompt), timeout)
            except Exception as e:  # one failing client is reported, the others finish
                with lock:
                    errors.append(f"client {i}: {e}")
                return
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} clients failed; first: {errors[0]}")
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    tokens = sum(r["tokens"] for r in results)
    ttfts = [r["ttft"] for r in results if r["ttft"] is not None]
    stps = [r["stream_tps"] for r in results if r["stream_tps"] is not None]
    return {"streams": n, "requests": len(results), "tokens": tokens, "wall_s": wall,
            "aggregate_tps": tokens / wall if wall > 0 else 0.0,
            "ttft_s": statistics.median(ttfts) if ttfts else None,
            "stream_tps": statistics.median(stps) if stps else None,
            "tokens_from_usage": all(r["from_usage"] for r in results)}


def measure(ep, levels, reps, requests, prompts, timeout, warmup=True, log=None):
    """Runs every level `reps` times; returns {N: {"reps": [...], medians...}}."""
    if warmup:
        one_request(ep, unique(prompts[0]), timeout)
    out = {}
    for n in levels:
        runs = []
        for rep in range(reps):
            r = run_level(ep, n, requests, prompts, rep, timeout)
            if log:
                log(f"{n} streams, rep {rep + 1}/{reps}: {r['aggregate_tps']:.1f} tok/s aggregate, "
                    f"{r['tokens']} tokens in {r['wall_s']:.2f} s")
            runs.append(r)

        def med(key):
            vals = [r[key] for r in runs if r[key] is not None]
            return statistics.median(vals) if vals else None

        out[n] = {"reps": runs, "aggregate_tps": med("aggregate_tps"), "ttft_s": med("ttft_s"),
                  "stream_tps": med("stream_tps"), "tokens_per_request": med("tokens") / requests / n,
                  "tokens_from_usage": all(r["tokens_from_usage"] for r in runs)}
    return out


def fmt(v, spec):
    return format(v, spec) if v is not None else "–"


def table(results):
    lines = ["| streams | aggregate tok/s | TTFT s | per-stream tok/s | tokens/request |",
             "|---:|---:|---:|---:|---:|"]
    for n, r in results.items():
        lines.append(f"| {n} | {fmt(r['aggregate_tps'], '.1f')} | {fmt(r['ttft_s'], '.3f')} | "
                     f"{fmt(r['stream_tps'], '.1f')} | {fmt(r['tokens_per_request'], '.1f')} |")
    return "\n".join(lines)


def add_common_args(ap):
    ap.add_argument("--api-key", default="", help="sent as 'Authorization: Bearer KEY'")
    ap.add_argument("--model", default="default", help="model name in the request body")
    ap.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    ap.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--requests", type=int, default=1, help="requests per client per repetition")
    ap.add_argument("--prompts", help="file with one prompt per line (default: 16 built-in prompts)")
    ap.add_argument("--extra", default="{}", help="JSON object merged into every request body")
    ap.add_argument("--timeout", type=float, default=600, help="socket timeout per request, seconds")


def load_prompts(path):
    if not path:
        return DEFAULT_PROMPTS
    with open(path, encoding="utf-8") as f:
        prompts = [line.strip() for line in f if line.strip()]
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def endpoint_from_args(args, url):
    extra = json.loads(args.extra)
    if not isinstance(extra, dict):
        raise ValueError("--extra must be a JSON object")
    return Endpoint(url, args.api_key, args.model, args.endpoint, args.max_tokens, extra)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    add_common_args(ap)
    ap.add_argument("--json", metavar="OUT", help="write all measurements as JSON to OUT")
    args = ap.parse_args()
    if min(args.concurrency + [args.reps, args.requests, args.max_tokens]) < 1:
        sys.exit("serve_load: --concurrency, --reps, --requests and --max-tokens must be positive")
    try:
        ep = endpoint_from_args(args, args.url)
        prompts = load_prompts(args.prompts)
        results = measure(ep, args.concurrency, args.reps, args.requests, prompts, args.timeout,
                          log=lambda m: print(f"[serve_load] {m}", file=sys.stderr, flush=True))
    except (OSError, ValueError, RuntimeError, http.client.HTTPException) as e:
        sys.exit(f"serve_load: {e}")
    print(table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({str(n): r for n, r in results.items()}, f, indent=2)


if __name__ == "__main__":
    main()
