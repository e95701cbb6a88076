"""`realm quantize` writes the same blocks as llama.cpp's libggml (and gguf-py where it quantizes).

Inputs are random F32 matrices of several distributions written with gguf-py; the quantized
tensor bytes from realm must equal ggml_quantize_chunk's (the *_ref quantizers, no imatrix).
"""
import ctypes

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q, GGUFReader, GGUFWriter
from gguf import quants as gq

# Weight formats that ggml_quantize_chunk accepts without an importance matrix.
WEIGHT_TYPES = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
                "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]
# Activation formats: compared through ggml's from_float_ref.
ACTIVATION_TYPES = ["Q8_1", "Q8_K"]


def matrix(kind: str, rows=16, cols=512, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        m = rng.standard_normal((rows, cols))
    elif kind == "uniform":
        m = rng.uniform(-1, 1, (rows, cols))
    elif kind == "ties":  # values on a coarse grid produce exact rounding ties
        m = rng.integers(-16, 17, (rows, cols)) / 8.0
    elif kind == "tiny":
        m = rng.standard_normal((rows, cols)) * 1e-6
    elif kind == "mixed":  # zero rows, constant rows, outliers
        m = rng.standard_normal((rows, cols))
        m[0] = 0.0
        m[1] = 0.75
        m[2, ::37] = 300.0
        m[3] = -m[3] ** 2
    else:
        raise ValueError(kind)
    return m.astype(np.float32)


def write_f32(path, tensors: dict):
    w = GGUFWriter(str(path), arch="test")
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize_with_realm(realm, ggml, tmp_path, m: np.ndarray, qtype: str):
    src, dst = tmp_path / "in.gguf", tmp_path / f"out-{qtype}.gguf"
    write_f32(src, {"w": m, "norm": m[0].copy()})
    realm("quantize", src, dst, qtype.lower())
    tensors = {t.name: t for t in GGUFReader(dst).tensors}
    # 1-D tensors (norms) stay F32, as llama.cpp's quantizer leaves them.
    assert tensors["norm"].tensor_type == Q.F32
    w = tensors["w"]
    assert w.tensor_type == Q[qtype]
    # Sizes from libggml: gguf-py's table has a stale Q8_1 block size (40 bytes; ggml's is 36).
    size = ggml.lib.ggml_row_size(int(Q[qtype]), m.shape[1]) * m.shape[0]
    with open(dst, "rb") as f:
        f.seek(w.data_offset)
        return f.read(size)


KINDS = ["normal", "uniform", "ties", "tiny", "mixed"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("qtype", WEIGHT_TYPES)
def test_weight_blocks_equal_ggml(qtype, kind, realm, ggml, tmp_path):
    m = matrix(kind, seed=KINDS.index(kind))
    got = quantize_with_realm(realm, ggml, tmp_path, m, qtype)
    want = ggml.quantize(int(Q[qtype]), m)
    assert len(got) == len(want)
    assert got == want, f"{qtype}/{kind}: first differing byte {next(i for i in range(len(got)) if got[i] != want[i])}"


GGUF_PY_QUANTIZERS = ["BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]


@pytest.mark.parametrize("qtype", GGUF_PY_QUANTIZERS)
def test_weight_blocks_equal_gguf_py(qtype, realm, ggml, tmp_path):
    m = matrix("normal", seed=7)
    got = quantize_with_realm(realm, ggml, tmp_path, m, qtype)
    assert got == gq.quantize(m, Q[qtype]).tobytes()


@pytest.mark.parametrize("qtype", ACTIVATION_TYPES)
def test_activation_blocks_equal_ggml(qtype, realm, ggml, tmp_path):
    m = matrix("normal", seed=3)
    got = quantize_with_realm(realm, ggml, tmp_path, m, qtype)
    # ggml_quantize_chunk does not take activation formats; call their reference quantizers.
    fn = getattr(ggml.lib, f"quantize_row_{qtype.lower()[:2]}{qtype[2:]}_ref")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    flat = np.ascontiguousarray(m.reshape(-1))
    out = ctypes.create_string_buffer(ggml.lib.ggml_row_size(int(Q[qtype]), flat.size))
    fn(flat.ctypes.data, out, flat.size)
    assert got == out.raw


def test_rejects_unknown_type(realm, tmp_path):
    src = tmp_path / "in.gguf"
    write_f32(src, {"w": matrix("normal")})
    proc = realm("quantize", src, tmp_path / "o.gguf", "q9_9", check=False)
    assert proc.returncode != 0
    assert "q9_9" in proc.stderr
    assert not (tmp_path / "o.gguf").exists()
