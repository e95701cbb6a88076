"""Bad input to the CLI gives a clear error and a non-zero exit, never a crash (the suite runs
the ASan+UBSan build, so any memory error would abort with a sanitizer report)."""
import pytest


def assert_clean_failure(proc, *needles):
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in proc.stderr, (n, proc.stderr)


def test_missing_file(realm, tmp_path):
    assert_clean_failure(realm("info", tmp_path / "nope.gguf", check=False), "nope.gguf")


def test_directory(realm, tmp_path):
    assert_clean_failure(realm("info", tmp_path, check=False))


def test_not_gguf(realm, tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"hello world, definitely not a model" * 10)
    assert_clean_failure(realm("info", p, check=False), "magic")


@pytest.mark.parametrize("cut", [3, 4, 8, 16, 24, 100, 5000, 100000])
def test_truncated_real_model(realm, models, tmp_path, cut):
    p = tmp_path / "cut.gguf"
    with open(models["smollm2"], "rb") as f:
        p.write_bytes(f.read(cut))
    assert_clean_failure(realm("info", p, check=False), "gguf")


def test_truncated_tensor_data(realm, models, tmp_path):
    data = models["stories"].read_bytes()
    p = tmp_path / "short.gguf"
    p.write_bytes(data[:-1000])
    proc = realm("quantize", p, tmp_path / "o.gguf", "q8_0", check=False)
    assert_clean_failure(proc, "past end of file")
