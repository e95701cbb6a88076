"""Dequantizing every tensor of the real models equals gguf-py's dequantizer bit for bit.

`realm quantize IN OUT f32` writes every tensor dequantized to F32; gguf-py dequantizes the
original file independently; the float bit patterns must be identical.
"""
import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize


@pytest.mark.parametrize("name", ["smollm2", "gemma3", "stories"])
def test_dequantize_matches_gguf_py(name, models, realm, tmp_path):
    src = models[name]
    out = tmp_path / "f32.gguf"
    realm("quantize", src, out, "f32")
    ref = GGUFReader(src)
    got = {t.name: t for t in GGUFReader(out).tensors}
    assert len(got) == len(ref.tensors)
    checked_types = set()
    for t in ref.tensors:
        g = got[t.name]
        assert g.tensor_type.name == "F32", t.name
        assert list(g.shape) == list(t.shape), t.name
        want = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False).reshape(-1)
        have = np.asarray(g.data).reshape(-1)
        assert have.shape == want.shape, t.name
        if not np.array_equal(have.view(np.uint32), want.view(np.uint32)):
            bad = np.flatnonzero(have.view(np.uint32) != want.view(np.uint32))
            pytest.fail(f"{t.name} ({t.tensor_type.name}): {bad.size} of {want.size} floats differ, "
                        f"first at {bad[0]}: realm {have[bad[0]]!r} vs gguf-py {want[bad[0]]!r}")
        checked_types.add(t.tensor_type.name)
    print(f"{name}: {len(ref.tensors)} tensors bit-identical, types {sorted(checked_types)}")
