"""Shared fixtures: the realm binary, the real models and llama.cpp's prebuilt libggml.

scripts/test sets every variable below; running pytest by hand needs the same ones.
"""
import ctypes
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env_path(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the suite through ./scripts/test")
    path = Path(value)
    if not path.exists():
        pytest.fail(f"{name}={value} does not exist")
    return path


@pytest.fixture(scope="session")
def realm_bin() -> Path:
    return _env_path("REALM_BIN")


@pytest.fixture(scope="session")
def models() -> dict:
    return {
        "smollm2": _env_path("REALM_SMOLLM2"),
        "gemma3": _env_path("REALM_GEMMA3"),
        "stories": _env_path("REALM_STORIES"),
    }


@pytest.fixture(scope="session")
def realm(realm_bin):
    def run(*args, check=True, timeout=900):
        proc = subprocess.run([str(realm_bin), *map(str, args)], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"realm {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
        return proc
    return run


class Ggml:
    """ctypes view of llama.cpp's libggml-base.so (the reference quantizer/dequantizer)."""

    def __init__(self, lib_dir: Path):
        self.lib = ctypes.CDLL(str(lib_dir / "libggml-base.so"))
        self.lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        self.lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                                 ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        self.lib.ggml_row_size.restype = ctypes.c_size_t
        self.lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
        self.lib.ggml_quantize_init.argtypes = [ctypes.c_int]

    def quantize(self, type_id: int, rows: np.ndarray) -> bytes:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        nrows, n_per_row = rows.shape
        self.lib.ggml_quantize_init(type_id)
        out = ctypes.create_string_buffer(self.lib.ggml_row_size(type_id, n_per_row) * nrows)
        written = self.lib.ggml_quantize_chunk(type_id, rows.ctypes.data, out, 0, nrows, n_per_row, None)
        return out.raw[:written]


@pytest.fixture(scope="session")
def ggml() -> Ggml:
    return Ggml(_env_path("REALM_GGML_LIB_DIR"))


@pytest.fixture(scope="session")
def node_ref() -> Path:
    return _env_path("REALM_NODE_REF")
