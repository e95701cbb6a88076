"""The default guest (guest/default) through `realm guest run`: the same text as `realm run`."""
import json
import os
from pathlib import Path

import pytest

from conftest import _env_path


@pytest.fixture(scope="session")
def default_guest(realm_bin) -> Path:
    # The guest is built next to the CLI: <build>/guests/default.wasm (REALM_DEFAULT_GUEST overrides).
    if os.environ.get("REALM_DEFAULT_GUEST"):
        return _env_path("REALM_DEFAULT_GUEST")
    path = Path(realm_bin).resolve().parents[2] / "guests" / "default.wasm"
    if not path.exists():
        pytest.fail(f"{path} does not exist: build the realm_guests target")
    return path


def guest_run(realm, guest, model, request: dict):
    proc = realm("guest", "run", guest, "-m", model, "--request", json.dumps(request), check=False)
    lines = proc.stdout.rstrip("\n").split("\n")
    response = json.loads(lines[-1])
    streamed = "\n".join(lines[:-1])
    return proc, response, streamed


CASES = [
    # (model key, realm run args, request)
    ("stories", ["-p", "Once upon a time", "--temp", "0", "-n", "48", "--seed", "5"],
     {"prompt": "Once upon a time", "temperature": 0, "max_tokens": 48, "seed": 5}),
    ("stories", ["-p", "Once upon a time", "--temp", "0.9", "--top-k", "40", "--top-p", "0.95", "--min-p", "0.05",
                 "--repeat-penalty", "1.1", "-n", "64", "--seed", "1234"],
     {"prompt": "Once upon a time", "temperature": 0.9, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
      "repeat_penalty": 1.1, "max_tokens": 64, "seed": 1234}),
    ("stories", ["-p", "Once upon a time", "--temp", "0", "-n", "40", "--stop", "Lily"],
     {"prompt": "Once upon a time", "temperature": 0, "max_tokens": 40, "stop": "Lily", "seed": 1}),
    ("stories", ["-p", "Once upon a time", "--temp", "0", "--frequency-penalty", "0.5", "--presence-penalty", "0.25",
                 "-n", "64", "--seed", "3"],
     {"prompt": "Once upon a time", "temperature": 0, "frequency_penalty": 0.5, "presence_penalty": 0.25,
      "max_tokens": 64, "seed": 3}),
    ("stories", ["-p", "Once upon a time", "--temp", "0.8", "--typical-p", "0.9", "--frequency-penalty", "0.75",
                 "--presence-penalty", "-0.5", "--repeat-last-n", "32", "-n", "64", "--seed", "42"],
     {"prompt": "Once upon a time", "temperature": 0.8, "typical_p": 0.9, "frequency_penalty": 0.75,
      "presence_penalty": -0.5, "repeat_last_n": 32, "max_tokens": 64, "seed": 42}),
    ("smollm2", ["--chat", "--system", "You are a helpful assistant.", "-p", "What is the capital of France?",
                 "--temp", "0", "-n", "32", "--seed", "7"],
     {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                   {"role": "user", "content": "What is the capital of France?"}],
      "temperature": 0, "max_tokens": 32, "seed": 7}),
]


@pytest.mark.parametrize("key, run_args, request_body", CASES, ids=["stories-greedy", "stories-sampled",
                                                                   "stories-stop", "stories-penalties",
                                                                   "stories-typical-penalties", "smollm2-chat"])
@pytest.mark.parametrize("stream", [True, False])
def test_default_guest_matches_realm_run(realm, default_guest, key, run_args, request_body, stream):
    model = _env_path({"stories": "REALM_STORIES", "smollm2": "REALM_SMOLLM2"}[key])
    expected = realm("run", "-m", model, *run_args).stdout
    proc, response, streamed = guest_run(realm, default_guest, model, {**request_body, "stream": stream})
    assert proc.returncode == 0, proc.stderr
    choice = response["choices"][0]
    text = choice["message"]["content"] if "messages" in request_body else choice["text"]
    assert text == expected
    assert streamed == (expected if stream else "")
    assert choice["finish_reason"] in ("stop", "length")
    usage = response["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if key == "smollm2":
        assert "Paris" in text
        assert response["object"] == "chat.completion"


def test_guest_run_weights_flags(realm, default_guest, tmp_path):
    # `--weights` reaches the engine's model (a Q4_0 file: Rows16 copies on AVX-512 by default) and
    # changes no result.
    model = tmp_path / "stories-q4_0.gguf"
    realm("quantize", _env_path("REALM_STORIES"), model, "q4_0")
    expected = realm("run", "-m", model, "-p", "Once upon a time", "--temp", "0", "-n", "16").stdout
    body = json.dumps({"prompt": "Once upon a time", "temperature": 0, "max_tokens": 16})
    for extra in (["--weights", "copy"], ["--weights", "file"], ["--no-repack"]):
        proc = realm("guest", "run", default_guest, "-m", model, "--request", body, *extra, check=False)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.rstrip("\n").split("\n")[-1])["choices"][0]["text"] == expected


def _tokenize(realm, model, text):
    return json.loads(realm("tokenize", "-m", model, text).stdout)


def test_default_guest_logit_bias_bans_the_greedy_token(realm, default_guest):
    model = _env_path("REALM_STORIES")
    prompt = "Once upon a time"
    base = {"prompt": prompt, "temperature": 0, "max_tokens": 48, "seed": 1}
    proc, response, _ = guest_run(realm, default_guest, model, base)
    assert proc.returncode == 0, proc.stderr
    greedy = response["choices"][0]["text"]
    assert greedy == realm("run", "-m", model, "-p", prompt, "--temp", "0", "-n", "48").stdout
    # The first greedy token: what the prompt + greedy text tokenizes to right after the prompt's tokens.
    prompt_ids = _tokenize(realm, model, prompt)
    full_ids = _tokenize(realm, model, prompt + greedy)
    assert full_ids[:len(prompt_ids)] == prompt_ids
    banned = full_ids[len(prompt_ids)]
    assert banned in full_ids[len(prompt_ids):]

    proc, response, _ = guest_run(realm, default_guest, model, {**base, "logit_bias": {str(banned): -100}})
    assert proc.returncode == 0, proc.stderr
    text = response["choices"][0]["text"]
    assert text != greedy
    assert text
    ids = _tokenize(realm, model, prompt + text)
    assert banned not in ids[len(prompt_ids):]

    # An empty object changes nothing.
    proc, response, _ = guest_run(realm, default_guest, model, {**base, "logit_bias": {}})
    assert response["choices"][0]["text"] == greedy


@pytest.mark.parametrize("body", ["{", "[1]", '{"prompt": 7}', '{"prompt": "x", "max_tokens": 0}',
                                  '{"prompt": "x", "temperature": -1}', '{"prompt": "x", "typical_p": 0}',
                                  '{"prompt": "x", "logit_bias": {"5": 101}}',
                                  '{"prompt": "x", "logit_bias": {"abc": 1}}',
                                  '{"prompt": "x", "logit_bias": {"999999999": 1}}'])
def test_default_guest_bad_requests(realm, default_guest, body):
    proc = realm("guest", "run", default_guest, "-m", _env_path("REALM_STORIES"), "--request", body, check=False)
    assert proc.returncode == 1
    response = json.loads(proc.stdout.strip().split("\n")[-1])
    assert "error" in response and response["error"]["message"]


def test_guest_run_missing_files(realm, default_guest, tmp_path):
    proc = realm("guest", "run", tmp_path / "none.wasm", "-m", _env_path("REALM_STORIES"),
                 "--request", "{}", check=False)
    assert proc.returncode == 1 and "realm guest run" in proc.stderr
    proc = realm("guest", "run", default_guest, "-m", tmp_path / "none.gguf", "--request", "{}", check=False)
    assert proc.returncode == 1 and "realm guest run" in proc.stderr
