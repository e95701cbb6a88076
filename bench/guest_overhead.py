#!/usr/bin/env python3
"""Guest-path overhead: the same greedy completion through `realm run` (the engine directly) and
through `realm guest run` with the default guest (WebAssembly sandbox + host functions), in
alternating runs on the same model and thread count. Reports median end-to-end tokens/s
(prompt + generation, model load excluded) of each path and their ratio.

  bench/guest_overhead.py --realm build/release/src/cli/realm --guest build/release/guests/default.wasm \
      --model ~/.cache/realm/models/SmolLM2-135M-Instruct.Q4_1.gguf --tokens 64 --reps 5 --threads 2
"""
import argparse
import json
import re
import statistics
import subprocess

PROMPT = "The quick brown fox jumps over the lazy dog. Then it"


def direct(a):
    p = subprocess.run([a.realm, "run", "-m", a.model, "-p", PROMPT, "--temp", "0", "-n", str(a.tokens),
                        "-t", str(a.threads)], capture_output=True, text=True, check=True)
    m = re.search(r"prompt: (\d+) tokens in ([\d.]+) s .*generation: (\d+) tokens in ([\d.]+) s", p.stderr)
    return p.stdout, int(m[3]) / (float(m[2]) + float(m[4]))


def guest(a):
    req = json.dumps({"prompt": PROMPT, "max_tokens": a.tokens, "temperature": 0})
    p = subprocess.run([a.realm, "guest", "run", a.guest, "-m", a.model, "--request", req, "-t", str(a.threads)],
                       capture_output=True, text=True, check=True)
    m = re.search(r"request: (\d+) completion tokens in ([\d.]+) s", p.stderr)
    text = json.loads(p.stdout.strip().splitlines()[-1])["choices"][0]["text"]
    return text, int(m[1]) / float(m[2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--realm", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    d, g = [], []
    for _ in range(a.reps):
        td, rd = direct(a)
        tg, rg = guest(a)
        assert tg == td.rstrip("\n") or tg == td, f"outputs differ:\n{td!r}\n{tg!r}"
        d.append(rd)
        g.append(rg)
    md, mg = statistics.median(d), statistics.median(g)
    print(f"| path | median tok/s (end to end) | runs |\n|---|---|---|")
    print(f"| engine (`realm run`) | {md:.2f} | {', '.join(f'{x:.2f}' for x in d)} |")
    print(f"| default guest (`realm guest run`) | {mg:.2f} | {', '.join(f'{x:.2f}' for x in g)} |")
    print(f"\nguest / engine = {mg / md:.4f} ({a.tokens} tokens, {a.threads} threads, {a.reps} alternating runs)")


if __name__ == "__main__":
    main()
