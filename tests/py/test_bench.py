"""`realm bench` measures pp/tg like llama-bench; the figures themselves live in docs, not in tests."""
import json


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
