"""Files written by `realm synth` + `realm quantize` load and run in llama.cpp, and realm's
dequantization of them equals gguf-py's."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize

# Every weight format of `realm quantize` that llama.cpp can run a matmul with.
TYPES = ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
         "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs"]

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def quantized_models(realm, models, tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    base = d / "synth-f32.gguf"
    # Row lengths are multiples of 256 so that every K-quant applies to every matrix.
    realm("synth", "--vocab-from", models["stories"], "--n-embd", 256, "--n-ff", 512, "--n-layer", 2,
          "--n-head", 4, "--n-head-kv", 2, "--n-ctx", 256, "--type", "f32", "--seed", 1, base)
    paths = {}
    for t in TYPES:
        paths[t] = d / f"synth-{t}.gguf"
        realm("quantize", base, paths[t], t)
    return paths


def test_llama_cpp_loads_and_runs_every_type(quantized_models, node_ref):
    env = dict(os.environ, NODE_PATH=str(node_ref / "node_modules"))
    script = node_ref / "llama_load.mjs"
    script.write_text((HERE / "ref" / "llama_load.mjs").read_text())  # ESM resolves imports next to the script
    proc = subprocess.run(["node", str(script), "Once upon a time", "8", *map(str, quantized_models.values())],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(TYPES), proc.stdout + proc.stderr
    for t, r in zip(TYPES, results):
        assert r["ok"], f"{t}: {r.get('error')}"
        assert len(r["generated"]) == 8, t
        assert all(0 <= tok < 512 for tok in r["generated"]), t


@pytest.mark.parametrize("qtype", TYPES)
def test_realm_dequantizes_its_files_like_gguf_py(qtype, quantized_models, realm, tmp_path):
    src = quantized_models[qtype]
    out = tmp_path / "back.gguf"
    realm("quantize", src, out, "f32")
    got = {t.name: t for t in GGUFReader(out).tensors}
    for t in GGUFReader(src).tensors:
        want = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False).reshape(-1)
        have = np.asarray(got[t.name].data).reshape(-1)
        assert np.array_equal(have.view(np.uint32), want.view(np.uint32)), t.name
