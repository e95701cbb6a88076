"""`realm synth` writes llama-architecture models of real shapes with a real vocabulary."""
import json
from collections import Counter

import pytest
from gguf import GGUFReader


@pytest.fixture(scope="module")
def spm_vocab(models):
    # The 32000-token llama SPM vocabulary, as the 768x12 benchmark shape uses.
    path = models["stories"].parent.parent / "vocab" / "ggml-vocab-llama-spm.gguf"
    assert path.exists(), path
    return path


def test_preset_768x12_q4_k_m(realm, spm_vocab, tmp_path):
    out = tmp_path / "synth.gguf"
    realm("synth", "--preset", "768x12", "--vocab-from", spm_vocab, "--type", "q4_K_M", out)
    info = json.loads(realm("info", "--json", out).stdout)
    hp = info["hyperparameters"]
    assert info["architecture"] == "llama"
    assert (hp["embedding_length"], hp["block_count"], hp["feed_forward_length"]) == (768, 12, 2048)
    assert (hp["attention.head_count"], hp["attention.head_count_kv"]) == (12, 12)
    assert info["tokenizer"]["vocab_size"] == 32000
    assert info["tokenizer"]["model"] == "llama"
    # llama.cpp's Q4_K_M recipe: Q6_K for output.weight and for attn_v/ffn_down in the layers
    # i < n/8, i >= 7n/8 or (i - n/8) % 3 == 2 (for 12 layers: 0, 3, 6, 9, 10, 11); Q4_K elsewhere.
    more = [i for i in range(12) if i < 12 // 8 or i >= 7 * 12 // 8 or (i - 12 // 8) % 3 == 2]
    assert more == [0, 3, 6, 9, 10, 11]
    types = {t.name: t.tensor_type.name for t in GGUFReader(out).tensors}
    assert types["output.weight"] == "Q6_K"
    assert types["token_embd.weight"] == "Q4_K"
    for i in range(12):
        want = "Q6_K" if i in more else "Q4_K"
        assert types[f"blk.{i}.attn_v.weight"] == want
        assert types[f"blk.{i}.ffn_down.weight"] == want
        assert types[f"blk.{i}.attn_q.weight"] == "Q4_K"
        assert types[f"blk.{i}.attn_norm.weight"] == "F32"
    assert Counter(types.values()) == {"Q6_K": 13, "Q4_K": 12 * 7 - 12 + 1, "F32": 25}
    # The vocabulary is copied verbatim.
    src = GGUFReader(spm_vocab)
    dst = GGUFReader(out)
    assert dst.fields["tokenizer.ggml.tokens"].contents() == src.fields["tokenizer.ggml.tokens"].contents()


def test_synth_is_deterministic(realm, models, tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    args = ["--vocab-from", models["stories"], "--n-embd", 128, "--n-ff", 256, "--n-layer", 2,
            "--n-head", 4, "--n-head-kv", 2, "--type", "q8_0", "--seed", 5]
    realm("synth", *args, a)
    realm("synth", *args, b)
    assert a.read_bytes() == b.read_bytes()


def test_bad_shapes(realm, models, tmp_path):
    proc = realm("synth", "--vocab-from", models["stories"], "--n-embd", 100, "--n-head", 3,
                 tmp_path / "x.gguf", check=False)
    assert proc.returncode == 1 and "n_head" in proc.stderr
    proc = realm("synth", "--vocab-from", tmp_path / "missing.gguf", tmp_path / "x.gguf", check=False)
    assert proc.returncode == 1 and "missing.gguf" in proc.stderr
