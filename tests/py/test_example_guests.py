"""The example guests guest/examples/policy (content policy: rewind and ban) and guest/examples/choice
(constrained choice over the guest's own log-softmax) through `realm guest run`."""
import json
import os
from pathlib import Path

import pytest

from conftest import _env_path


def _guest(realm_bin, name: str) -> Path:
    # Built next to the CLI: <build>/guests/<name>.wasm (REALM_<NAME>_GUEST overrides), as test_guest.py does.
    env = f"REALM_{name.upper()}_GUEST"
    if os.environ.get(env):
        return _env_path(env)
    path = Path(realm_bin).resolve().parents[2] / "guests" / f"{name}.wasm"
    if not path.exists():
        pytest.fail(f"{path} does not exist: build the realm_guests target")
    return path


@pytest.fixture(scope="session")
def default_guest(realm_bin) -> Path:
    return _guest(realm_bin, "default")


@pytest.fixture(scope="session")
def policy_guest(realm_bin) -> Path:
    return _guest(realm_bin, "policy")


@pytest.fixture(scope="session")
def choice_guest(realm_bin) -> Path:
    return _guest(realm_bin, "choice")


def guest_run(realm, guest, model, request):
    body = request if isinstance(request, str) else json.dumps(request)
    proc = realm("guest", "run", guest, "-m", model, "--request", body, check=False)
    lines = proc.stdout.rstrip("\n").split("\n")
    response = json.loads(lines[-1])
    streamed = "\n".join(lines[:-1])
    return proc, response, streamed


def _text(response):
    choice = response["choices"][0]
    return choice["message"]["content"] if "message" in choice else choice["text"]


FRANCE = {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                       {"role": "user", "content": "What is the capital of France?"}],
          "temperature": 0, "max_tokens": 32, "seed": 7}
STORY = {"prompt": "Once upon a time", "temperature": 0, "max_tokens": 48, "seed": 1}
STORY_SAMPLED = {"prompt": "Once upon a time", "temperature": 0.9, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
                 "max_tokens": 64, "seed": 1234}


# ---- policy ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, body", [("stories", STORY), ("stories", STORY_SAMPLED), ("smollm2", FRANCE)],
                         ids=["stories-greedy", "stories-sampled", "smollm2-chat"])
def test_policy_without_banned_matches_default_guest(realm, default_guest, policy_guest, key, body):
    model = _env_path({"stories": "REALM_STORIES", "smollm2": "REALM_SMOLLM2"}[key])
    proc, expected, _ = guest_run(realm, default_guest, model, body)
    assert proc.returncode == 0, proc.stderr
    proc, response, streamed = guest_run(realm, policy_guest, model, {**body, "stream": True})
    assert proc.returncode == 0, proc.stderr
    assert _text(response) == _text(expected)
    assert streamed == _text(expected)
    assert response["choices"][0]["finish_reason"] == expected["choices"][0]["finish_reason"]
    assert response["usage"] == expected["usage"]
    assert response["policy"] == {"regenerations": 0}


def test_policy_bans_paris(realm, policy_guest):
    model = _env_path("REALM_SMOLLM2")
    proc, response, streamed = guest_run(realm, policy_guest, model, {**FRANCE, "banned": ["paris"], "stream": True})
    assert proc.returncode == 0, proc.stderr
    text = _text(response)
    assert text and "paris" not in text.lower()
    assert streamed == text
    assert response["policy"]["regenerations"] >= 1
    assert response["object"] == "chat.completion"


@pytest.mark.parametrize("banned", [["lily"], ["LILY", "the"], ["e"]])
def test_policy_never_emits_banned_text(realm, policy_guest, banned):
    model = _env_path("REALM_STORIES")
    proc, plain, _ = guest_run(realm, policy_guest, model, STORY)
    assert any(w.lower() in _text(plain).lower() for w in banned)  # the model does produce them
    proc, response, streamed = guest_run(realm, policy_guest, model, {**STORY, "banned": banned, "stream": True,
                                                                      "max_regenerations": 14})
    # Either it avoided the words, or it gave up with a policy error: banned text is never streamed.
    assert not any(w.lower() in streamed.lower() for w in banned)
    if "error" in response:
        assert proc.returncode == 1
        assert response["error"]["type"] == "policy_error"
        assert response["policy"]["regenerations"] <= 14
    else:
        assert proc.returncode == 0, proc.stderr
        text = _text(response)
        assert text and streamed == text
        assert not any(w.lower() in text.lower() for w in banned)
        assert 1 <= response["policy"]["regenerations"] <= 14


def test_policy_lily_is_avoided(realm, policy_guest):
    model = _env_path("REALM_STORIES")
    proc, response, _ = guest_run(realm, policy_guest, model, {**STORY, "banned": ["Lily"]})
    assert proc.returncode == 0, proc.stderr
    assert "lily" not in _text(response).lower()
    assert response["policy"]["regenerations"] >= 1


def test_policy_error_when_the_limit_is_spent(realm, policy_guest):
    model = _env_path("REALM_STORIES")
    proc, response, streamed = guest_run(realm, policy_guest, model,
                                         {**STORY, "banned": ["lily"], "max_regenerations": 0, "stream": True})
    assert proc.returncode == 1
    assert response["error"]["type"] == "policy_error"
    assert response["policy"] == {"regenerations": 0}
    assert streamed == ", there was a little girl named"  # everything before the banned token


@pytest.mark.parametrize("body", ['{', '{"prompt": "x", "banned": "lily"}', '{"prompt": "x", "banned": [1]}',
                                  '{"prompt": "x", "banned": [""]}', '{"prompt": "x", "max_regenerations": 15}',
                                  '{"prompt": "x", "max_regenerations": -1}', '{"banned": ["a"]}'])
def test_policy_bad_requests(realm, policy_guest, body):
    proc, response, _ = guest_run(realm, policy_guest, _env_path("REALM_STORIES"), body)
    assert proc.returncode == 1
    assert response["error"]["message"]
    assert "trap" not in proc.stderr


# ---- choice ----------------------------------------------------------------------------------------------

def _check_choice(response, choices):
    assert response["choice"] in choices
    assert choices[response["index"]] == response["choice"]
    scores = response["scores"]
    assert set(scores) == set(choices)
    assert all(s <= 0 for s in scores.values())
    # The answer is the choice with the highest total log-probability (ties: the first listed).
    assert scores[response["choice"]] == max(scores.values())
    assert response["index"] == min(i for i, c in enumerate(choices) if scores[c] == max(scores.values()))
    return scores


SMOL_CASES = [
    ({"messages": [{"role": "user", "content": "Is Paris the capital of France? Answer yes or no."}]},
     ["yes", "no", "maybe"]),
    ({"messages": [{"role": "user", "content": "Is Paris the capital of France? Answer Yes or No."}]},
     ["Yes", "No"]),
    ({"messages": [{"role": "user", "content": "What color is the sky on a clear day?"}]},
     ["Blue", "Green", "Red"]),
    ({"prompt": "The capital of France is"}, [" Paris", " London", " Berlin"]),
]


@pytest.mark.parametrize("prompt, choices", SMOL_CASES, ids=["yes-no-maybe", "Yes-No", "sky", "prompt-capital"])
def test_choice_smollm2(realm, choice_guest, prompt, choices):
    proc, response, streamed = guest_run(realm, choice_guest, _env_path("REALM_SMOLLM2"),
                                         {**prompt, "choices": choices})
    assert proc.returncode == 0, proc.stderr
    _check_choice(response, choices)
    assert streamed == response["choice"]
    if "prompt" in prompt:
        assert response["choice"] == " Paris"  # what SmolLM2 gives (log-prob about -0.3)


def test_choice_yes_for_paris(realm, choice_guest):
    proc, response, _ = guest_run(realm, choice_guest, _env_path("REALM_SMOLLM2"),
                                  {**SMOL_CASES[0][0], "choices": ["yes", "no"]})
    assert proc.returncode == 0, proc.stderr
    assert response["choice"] == "yes"
    assert response["scores"]["yes"] > response["scores"]["no"]


@pytest.mark.parametrize("prompt", ["Once upon a time", "The cat sat on the", "Lily and Ben went to the"])
def test_choice_multi_token_choices_stories(realm, choice_guest, prompt):
    choices = [" park", " big red ball", " little girl named Lily", " mat", " zzz qqq"]
    proc, response, streamed = guest_run(realm, choice_guest, _env_path("REALM_STORIES"),
                                         {"prompt": prompt, "choices": choices})
    assert proc.returncode == 0, proc.stderr
    _check_choice(response, choices)
    assert streamed == response["choice"]
    assert all(response["tokens"][c] >= 1 for c in choices)


def test_choice_prefix_choice_against_its_extension(realm, choice_guest):
    # " Lily and Ben" extends " Lily", so its total log-probability can only be lower: " Lily" wins.
    choices = [" Lily and Ben", " Lily"]
    proc, response, _ = guest_run(realm, choice_guest, _env_path("REALM_STORIES"),
                                  {"prompt": "Once upon a time, there was a little girl named", "choices": choices})
    assert proc.returncode == 0, proc.stderr
    _check_choice(response, choices)
    assert response["choice"] == " Lily"
    assert response["scores"][" Lily and Ben"] < response["scores"][" Lily"]


@pytest.mark.parametrize("body", ['{"prompt": "x", "choices": []}', '{"prompt": "x", "choices": [1, 2]}',
                                  '{"prompt": "x", "choices": ["a", 2]}', '{"prompt": "x", "choices": "yes"}',
                                  '{"prompt": "x", "choices": [null]}', '{"prompt": "x"}',
                                  '{"prompt": "x", "choices": ["a", "a"]}', '{"prompt": "x", "choices": [""]}',
                                  '{"choices": ["a"]}', '{"prompt": "x", "choices": [' + ",".join(
                                      f'"c{i}"' for i in range(16)) + ']}', '{'])
def test_choice_bad_requests(realm, choice_guest, body):
    proc, response, streamed = guest_run(realm, choice_guest, _env_path("REALM_STORIES"), body)
    assert proc.returncode == 1
    assert response["error"]["message"]
    assert response["error"]["type"] == "invalid_request_error"
    assert streamed == ""
