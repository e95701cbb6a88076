"""`realm info --json` must agree with llama.cpp's gguf-py reader on the three real models."""
import json
import os
from collections import Counter

import pytest
from gguf import GGUFReader

MODELS = ["smollm2", "gemma3", "stories"]

# Facts about the files, read once with gguf-py and the models' published configs.
KNOWN = {
    "smollm2": dict(architecture="llama", block_count=30, embedding_length=576, head_count=9, head_count_kv=3,
                    vocab_size=49152, tokenizer="gpt2", chat_template=True, parameter_count=134515008),
    "gemma3": dict(architecture="gemma3", block_count=18, embedding_length=640, head_count=4, head_count_kv=1,
                   vocab_size=262144, tokenizer="llama", chat_template=False),
    "stories": dict(architecture="llama", block_count=5, embedding_length=64, head_count=8, head_count_kv=4,
                    vocab_size=512, tokenizer="llama", chat_template=False),
}


def scalar(reader, key):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


@pytest.fixture(scope="module", params=MODELS)
def info(request, models, realm):
    path = models[request.param]
    out = realm("info", "--json", path).stdout
    return request.param, path, json.loads(out), GGUFReader(path)


def test_matches_gguf_py(info):
    name, path, got, ref = info
    arch = scalar(ref, "general.architecture")
    assert got["architecture"] == arch
    assert got["file_size"] == os.path.getsize(path)
    assert got["gguf_version"] == scalar(ref, "GGUF.version")
    assert got["tensor_count"] == len(ref.tensors)
    assert got["parameter_count"] == sum(int(t.n_elements) for t in ref.tensors)
    want_types = Counter(t.tensor_type.name.lower() for t in ref.tensors)
    assert {k.lower(): v for k, v in got["tensor_types"].items()} == dict(want_types)
    # Every scalar hyper-parameter under the architecture prefix is reported with its value.
    for key, field in ref.fields.items():
        if key.startswith(arch + ".") and len(field.types) == 1:
            short = key[len(arch) + 1:]
            assert short in got["hyperparameters"], short
            want = field.contents()
            if isinstance(want, float):
                assert got["hyperparameters"][short] == pytest.approx(want, rel=1e-6)
            else:
                assert got["hyperparameters"][short] == want
    tok = got["tokenizer"]
    assert tok["model"] == scalar(ref, "tokenizer.ggml.model")
    assert tok["vocab_size"] == len(ref.fields["tokenizer.ggml.tokens"].data)
    tokens = ref.fields["tokenizer.ggml.tokens"].contents()
    for kind in ["bos", "eos", "eot", "unknown", "padding"]:
        want = scalar(ref, f"tokenizer.ggml.{kind}_token_id")
        if want is None:
            assert kind not in tok["special"]
        else:
            # Files may store -1 as u32 for "no such token" (stories260K's padding).
            text = tokens[want] if want < len(tokens) else None
            assert tok["special"][kind] == {"id": want, "text": text}
    assert got["chat_template"] == ("tokenizer.chat_template" in ref.fields)


def test_known_facts(info):
    name, _, got, _ = info
    facts = KNOWN[name]
    assert got["architecture"] == facts["architecture"]
    hp = got["hyperparameters"]
    for key in ["block_count", "embedding_length"]:
        assert hp[key] == facts[key]
    assert hp["attention.head_count"] == facts["head_count"]
    assert hp["attention.head_count_kv"] == facts["head_count_kv"]
    assert got["tokenizer"]["vocab_size"] == facts["vocab_size"]
    assert got["tokenizer"]["model"] == facts["tokenizer"]
    assert got["chat_template"] == facts["chat_template"]
    if "parameter_count" in facts:
        assert got["parameter_count"] == facts["parameter_count"]


def test_human_readable(models, realm):
    out = realm("info", models["smollm2"]).stdout
    for needle in ["llama", "576", "q4_1", "gpt2", "chat template", "parameters"]:
        assert needle.lower() in out.lower(), needle
