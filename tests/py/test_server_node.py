"""`realm serve` driven by the official npm `openai` client (tests/py/node/openai_client.mjs).

scripts/test installs the package (scripts/lib.sh: ensure_node_openai) and sets REALM_NPM_OPENAI.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from test_server import Server

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def npm_openai() -> Path:
    value = os.environ.get("REALM_NPM_OPENAI")
    if not value or not (Path(value) / "node_modules" / "openai").is_dir():
        pytest.fail("REALM_NPM_OPENAI is not set to an npm openai install: run the suite through ./scripts/test")
    return Path(value)


def test_npm_openai_client(realm_bin, models, npm_openai, tmp_path):
    srv = Server(realm_bin, tmp_path, {"smollm2": models["smollm2"], "stories": models["stories"]})
    try:
        srv.cli("tenant", "add", "stories-only", "--models", "stories")
        other = srv.cli("key", "create", "stories-only").stdout.strip()
        # The script resolves `openai` from a node_modules beside it.
        work = tmp_path / "node"
        work.mkdir()
        (work / "openai_client.mjs").write_text((HERE / "node" / "openai_client.mjs").read_text())
        (work / "node_modules").symlink_to(npm_openai / "node_modules")
        proc = subprocess.run(["node", str(work / "openai_client.mjs"), srv.base + "/v1", srv.default_key, other],
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        assert srv.stop() == 0
    assert "Paris" in out["chat"]
    assert out["stream"] == out["chat"] and out["stream_roles"] == ["assistant"]
    assert out["stream_finish"] == out["chat_finish"]
    assert out["stream_usage"] == out["chat_usage"]
    assert out["completion_stream"] == out["completion"] and out["completion"]
    assert out["models"] == ["smollm2", "stories"]
    assert out["errors"] == {"wrong_key": 401, "unknown_model": 404, "forbidden_model": 403, "bad_temperature": 400}
