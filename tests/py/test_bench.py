"""`realm bench` measures pp/tg like llama-bench; the figures themselves live in docs, not in tests."""
import json
import subprocess


def test_bench_json(realm, models):
    out = json.loads(realm("bench", "-m", models["stories"], "-p", "32", "-n", "8", "-r", "2", "-o", "json").stdout)
    assert [r["test"] for r in out] == ["pp32", "tg8"]
    for r in out:
        assert len(r["tokens_per_second"]) == 2
        assert r["min"] <= r["median"] <= r["max"] and r["min"] > 0
        assert r["params"] == 292800 and r["threads"] >= 1


def test_bench_markdown_and_errors(realm, models, tmp_path):
    md = realm("bench", "-m", models["stories"], "-p", "8", "-n", "0", "-r", "1").stdout
    assert md.startswith("| model |") and "| pp8 |" in md and "tg" not in md.split("\n", 2)[2]
    proc = realm("bench", "-m", tmp_path / "missing.gguf", check=False)
    assert proc.returncode == 1 and "missing.gguf" in proc.stderr


def test_bench_weights(realm, models, tmp_path):
    # A Q4_0 file (Q4_0, Q4_K and Q6_K get interleaved copies on AVX-512): every place the weights
    # can be read from must run; an unknown one is refused.
    q = tmp_path / "stories-q4_0.gguf"
    realm("quantize", models["stories"], q, "q4_0")
    for extra in ([], ["--no-repack"], ["--weights", "copy"], ["--weights", "file"], ["--weights", "rows16"]):
        out = json.loads(realm("bench", "-m", q, "-p", "16", "-n", "4", "-r", "1", "-o", "json", *extra).stdout)
        assert [r["test"] for r in out] == ["pp16", "tg4"] and all(r["median"] > 0 for r in out)
    bad = realm("bench", "-m", q, "--weights", "disk", check=False)
    assert bad.returncode != 0 and "--weights" in bad.stderr


def test_membw_json_and_hints(realm_bin):
    """realm-membw (the bandwidth bound of docs/PERFORMANCE.md): every prefetch hint reads and reports;
    by default it measures its candidate patterns and reports the fastest."""
    membw = realm_bin.parent.parent.parent / "bench" / "realm-membw"
    for hint in ("l1", "l2", "nta"):
        proc = subprocess.run([str(membw), "-t", "2", "-s", "8", "-p", "2", "--hint", hint, "-S", "8", "--prefetch", "1024",
                               "--json"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        r = json.loads(proc.stdout)
        assert r["hint"] == hint and r["streams"] == 8 and r["prefetch"] == 1024 and len(r["patterns"]) == 1
        assert 0 < r["min_gbps"] <= r["median_gbps"] <= r["max_gbps"]
        assert r["pages"] == "2m" and 0 <= r["huge_share"] <= 1
    proc = subprocess.run([str(membw), "-t", "2", "-s", "8", "-p", "2", "--pages", "4k", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["pages"] == "4k" and r["huge_share"] == 0 and len(r["patterns"]) == 6
    assert abs(r["median_gbps"] - max(p["median_gbps"] for p in r["patterns"])) < 1e-3
    assert (r["streams"], r["prefetch"]) in {(p["streams"], p["prefetch"]) for p in r["patterns"]}
    proc = subprocess.run([str(membw), "--prefetch", "512"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "streams" in proc.stderr
    proc = subprocess.run([str(membw), "--hint", "l3"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "hint" in proc.stderr
