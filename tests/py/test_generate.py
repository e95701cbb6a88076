"""End-to-end generation through the CLI: `realm run`, `realm tokenize`."""
import json

import pytest


def test_capital_of_france(realm, models):
    # SmolLM2's template injects its own default system message when none is given; with it the
    # 135M model answers "L'Étoile, la Marseillaise, ..." in llama.cpp as well (same greedy start),
    # so the end-to-end question is asked with a plain system message.
    proc = realm("run", "--chat", "-m", models["smollm2"], "-p", "What is the capital of France?",
                 "--system", "You are a helpful assistant.", "--temp", "0", "-n", "32")
    assert "Paris" in proc.stdout, proc.stdout
    assert "tok/s" in proc.stderr


def test_default_template_prompt_matches_llama_cpp_start(realm, models):
    proc = realm("run", "--chat", "-m", models["smollm2"], "-p", "What is the capital of France?",
                 "--temp", "0", "-n", "6")
    # llama.cpp (node-llama-cpp 3.21.1) greedy on the same rendered prompt starts "L'Étoile, la".
    assert proc.stdout.startswith("L'Étoile"), proc.stdout


def test_stories_greedy(realm, models):
    proc = realm("run", "-m", models["stories"], "-p", "Once upon a time", "--temp", "0", "-n", "10")
    # llama.cpp's greedy continuation of the same prompt (tests/data/model_refs/stories260K.json).
    assert proc.stdout.startswith(", there was a little girl named Lily"), proc.stdout


def test_weights_flags_same_text(realm, models, tmp_path):
    # Where the matrices are read from changes no result (the kernels give the same bits in every
    # layout): a Q4_0 file, which gets Rows16 copies on AVX-512, read four ways.
    q = tmp_path / "stories-q4_0.gguf"
    realm("quantize", models["stories"], q, "q4_0")
    outs = {tuple(extra): realm("run", "-m", q, "-p", "Once upon a time", "--temp", "0", "-n", "12", *extra).stdout
            for extra in ([], ["--weights", "copy"], ["--weights", "file"], ["--no-repack"])}
    assert len(set(outs.values())) == 1 and len(outs[()]) > 0, outs
    bad = realm("run", "-m", q, "-p", "x", "--weights", "disk", check=False)
    assert bad.returncode != 0 and "--weights" in bad.stderr


def test_stop_string_and_max_tokens(realm, models):
    proc = realm("run", "-m", models["stories"], "-p", "Once upon a time", "--temp", "0", "-n", "40",
                 "--stop", "Lily")
    assert proc.stdout.rstrip() == ", there was a little girl named", proc.stdout


def test_seeded_sampling_is_reproducible(realm, models):
    args = ["run", "-m", models["stories"], "-p", "Once upon a time", "--temp", "0.9", "--top-k", "40",
            "--seed", "1234", "-n", "24"]
    assert realm(*args).stdout == realm(*args).stdout


def test_tokenize(realm, models):
    ids = json.loads(realm("tokenize", "-m", models["smollm2"], "Hello world<|im_end|>").stdout)
    assert ids == [19556, 905, 2]
    plain = json.loads(realm("tokenize", "-m", models["smollm2"], "--no-parse-special", "<|im_end|>").stdout)
    assert 2 not in plain
    # stories260K adds BOS (id 1) unless --no-bos.
    assert json.loads(realm("tokenize", "-m", models["stories"], "Once upon a time").stdout) == [1, 403, 407, 261, 378]
    assert json.loads(realm("tokenize", "-m", models["stories"], "--no-bos", "Once upon a time").stdout) == [403, 407, 261, 378]


@pytest.mark.parametrize("args, needle", [
    (["--temp", "-1"], "temperature"),
    (["--top-p", "0"], "top_p"),
    (["-c", "4"], "context"),
])
def test_bad_generation_parameters(realm, models, args, needle):
    proc = realm("run", "-m", models["stories"], "-p", "Once upon a time", *args, check=False)
    assert proc.returncode == 1
    assert needle in proc.stderr, proc.stderr


def test_model_without_template(realm, models):
    proc = realm("run", "--chat", "-m", models["stories"], "-p", "hi", check=False)
    assert proc.returncode == 1 and "chat template" in proc.stderr


def test_interactive_chat(realm_bin, models):
    import subprocess
    proc = subprocess.run([str(realm_bin), "chat", "-m", str(models["smollm2"]), "--temp", "0", "-n", "24",
                           "--system", "You are a helpful assistant."],
                          input="What is the capital of France?\nAnd of Italy?\n", capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.strip().split("\n", 1)
    assert "Paris" in first
    assert "Rome" in second, proc.stdout
