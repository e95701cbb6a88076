"""`realm tenant|key|guest register|usage`: the admin commands over the server's SQLite database."""
import hashlib
import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import _env_path

KEY_RE = re.compile(r"rlm_[0-9a-f]{16}_[0-9a-f]{64}")


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "realm.db"


@pytest.fixture
def admin(realm, db):
    """Runs an admin command against the test's database; returns the CompletedProcess."""
    def run(*args, check=True):
        return realm(*args, "--db", db, check=check, timeout=120)
    return run


@pytest.fixture(scope="session")
def default_guest(realm_bin) -> Path:
    # Built next to the CLI: <build>/guests/default.wasm (REALM_DEFAULT_GUEST overrides), as test_guest.py finds it.
    if os.environ.get("REALM_DEFAULT_GUEST"):
        return _env_path("REALM_DEFAULT_GUEST")
    path = Path(realm_bin).resolve().parents[2] / "guests" / "default.wasm"
    if not path.exists():
        pytest.fail(f"{path} does not exist: build the realm_guests target")
    return path


def assert_fails(proc, code, *needles):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in proc.stderr, (n, proc.stderr)


def tenants(admin) -> dict:
    return {t["name"]: t for t in json.loads(admin("tenant", "list", "--json").stdout)}


def keys(admin, *tenant) -> list:
    return json.loads(admin("key", "list", *tenant, "--json").stdout)


def test_tenant_add_list_set_remove(admin):
    admin("tenant", "add", "acme", "--models", "smollm2, gemma3", "--rpm", "30", "--tpm", "5000", "--concurrency", "2",
          "--max-tokens", "256", "--guest-memory-mb", "64", "--guest-time-ms", "9000")
    admin("tenant", "add", "beta")
    ts = tenants(admin)
    assert set(ts) == {"acme", "beta"}
    acme = ts["acme"]
    assert acme["models"] == ["smollm2", "gemma3"]
    assert acme["guest"] is None
    assert acme["limits"] == {"requests_per_minute": 30, "tokens_per_minute": 5000, "max_concurrent": 2,
                              "max_tokens_per_request": 256, "guest_memory_bytes": 64 << 20, "guest_time_ms": 9000}
    assert acme["created_at"] > 1_600_000_000
    assert ts["beta"]["models"] == ["*"]  # default: every model
    assert ts["beta"]["limits"]["requests_per_minute"] > 0  # defaults are limits, not "unlimited"

    admin("tenant", "set", "acme", "--models", "*", "--rpm", "0")
    acme2 = tenants(admin)["acme"]
    assert acme2["models"] == ["*"]
    assert acme2["limits"]["requests_per_minute"] == 0
    assert acme2["limits"]["tokens_per_minute"] == 5000  # untouched
    assert acme2["created_at"] == acme["created_at"]

    table = admin("tenant", "list").stdout
    assert "NAME" in table and "acme" in table and "beta" in table

    admin("tenant", "remove", "beta")
    assert set(tenants(admin)) == {"acme"}


def test_tenant_errors(admin):
    admin("tenant", "add", "acme")
    assert_fails(admin("tenant", "add", "acme", check=False), 1, "tenant 'acme' already exists")
    for bad in ["a b", "x" * 65, "a/b", "é", "semi;colon"]:
        assert_fails(admin("tenant", "add", bad, check=False), 1, "invalid tenant name")
    assert_fails(admin("tenant", "add", "m", "--models", "bad name", check=False), 1, "invalid model name")
    for cmd in (["tenant", "remove", "nobody"], ["tenant", "set", "nobody", "--rpm", "1"],
                ["key", "create", "nobody"]):
        assert_fails(admin(*cmd, check=False), 1, "unknown tenant 'nobody'")
    # Usage errors exit with 2 and change nothing.
    assert_fails(admin("tenant", "set", "acme", check=False), 2, "nothing to change")
    assert_fails(admin("tenant", "add", "m", "--models", "a,,b", check=False), 2, "--models")
    assert_fails(admin("tenant", "set", "acme", "--guest-memory-mb", "0", check=False), 2, "--guest-memory-mb")
    assert_fails(admin("tenant", "set", "acme", "--guest-time-ms", "0", check=False), 2, "--guest-time-ms")
    assert set(tenants(admin)) == {"acme"}
    # CLI11's own parse errors (missing argument, bad number) are failures too.
    proc = admin("tenant", "add", check=False)
    assert proc.returncode not in (0, 1) and proc.stderr
    proc = admin("tenant", "set", "acme", "--rpm", "lots", check=False)
    assert proc.returncode not in (0, 1) and proc.stderr


def test_keys_create_list_revoke(admin, db):
    admin("tenant", "add", "acme")
    admin("tenant", "add", "beta")
    created = admin("key", "create", "acme", "--label", "ci")
    secret = created.stdout.strip()
    assert KEY_RE.fullmatch(secret), created.stdout
    assert "cannot be shown again" in created.stderr
    other = admin("key", "create", "beta").stdout.strip()
    assert KEY_RE.fullmatch(other) and other != secret

    listed = keys(admin)
    assert [(k["tenant"], k["label"], k["status"]) for k in listed] == [("acme", "ci", "active"),
                                                                      ("beta", "", "active")]
    assert listed[0]["prefix"] == secret[4:20]
    assert [k["tenant"] for k in keys(admin, "beta")] == ["beta"]
    everything = admin("key", "list", "--json").stdout + admin("key", "list").stdout
    assert secret[21:] not in everything and other[21:] not in everything

    # Only SHA-256 of the secret part is in the database.
    con = sqlite3.connect(db)
    rows = dict(con.execute("SELECT prefix, hash FROM api_keys").fetchall())
    con.close()
    assert rows[secret[4:20]] == hashlib.sha256(secret[21:].encode()).digest()
    raw = db.read_bytes() + (Path(str(db) + "-wal").read_bytes() if Path(str(db) + "-wal").exists() else b"")
    assert secret[21:].encode() not in raw

    key_id = listed[0]["id"]
    assert admin("key", "revoke", str(key_id)).stdout.strip() == f"revoked key {key_id}"
    after = keys(admin)
    assert after[0]["status"] == "revoked" and after[0]["revoked_at"] is not None
    assert after[1]["status"] == "active"
    assert "revoked" in admin("key", "list", "acme").stdout
    assert_fails(admin("key", "revoke", "999999", check=False), 1, "unknown key id 999999")

    # Removing a tenant deletes its keys.
    admin("tenant", "remove", "beta")
    assert [k["tenant"] for k in keys(admin)] == ["acme"]


def test_guest_register(admin, default_guest, tmp_path):
    admin("tenant", "add", "acme")
    out = admin("guest", "register", "acme", default_guest).stdout
    digest = hashlib.sha256(default_guest.read_bytes()).hexdigest()
    assert digest in out
    assert tenants(admin)["acme"]["guest"] == digest

    broken = tmp_path / "broken.wasm"
    broken.write_bytes(b"\0asm\x01\0\0\0" + b"\x7f" * 40)
    assert_fails(admin("guest", "register", "acme", broken, check=False), 1, "invalid guest module", "load: ")
    garbage = tmp_path / "garbage.wasm"
    garbage.write_bytes(b"hello, this is not wasm at all")
    assert_fails(admin("guest", "register", "acme", garbage, check=False), 1, "load: ")
    empty_module = tmp_path / "empty.wasm"  # valid wasm, but not a guest: no realm exports
    empty_module.write_bytes(b"\0asm\x01\0\0\0")
    assert_fails(admin("guest", "register", "acme", empty_module, check=False), 1, "load: ")
    assert tenants(admin)["acme"]["guest"] == digest  # unchanged by the failures

    assert_fails(admin("guest", "register", "nobody", default_guest, check=False), 1, "unknown tenant 'nobody'")
    assert_fails(admin("guest", "register", "acme", tmp_path / "missing.wasm", check=False), 1, "missing.wasm")
    assert_fails(admin("guest", "register", "acme", tmp_path, check=False), 1, "is a directory")


def test_usage(admin, db):
    admin("tenant", "add", "acme")
    assert json.loads(admin("usage", "--json").stdout) == {"rows": []}
    # Rows as the server writes them (one per request).
    con = sqlite3.connect(db)
    for i, (tenant, status, kind) in enumerate([("acme", 200, ""), ("acme", 429, "rate_limited"), ("beta", 200, "")]):
        con.execute("INSERT INTO usage (request_id, tenant, key_id, model, endpoint, prompt_tokens, completion_tokens,"
                    " latency_ms, status, error_kind, error_message, created_at)"
                    " VALUES (?, ?, NULL, 'smollm2', '/v1/chat/completions', 10, ?, 50, ?, ?, '', 1700000000)",
                    (f"req-{i}", tenant, i, status, kind))
    con.commit()
    con.close()
    everyone = json.loads(admin("usage", "--json").stdout)
    assert [r["request_id"] for r in everyone["rows"]] == ["req-2", "req-1", "req-0"]
    assert "totals" not in everyone
    acme = json.loads(admin("usage", "acme", "--json").stdout)
    assert [r["request_id"] for r in acme["rows"]] == ["req-1", "req-0"]
    assert acme["rows"][0]["status"] == 429 and acme["rows"][0]["error_kind"] == "rate_limited"
    assert acme["totals"] == {"tenant": "acme", "requests": 2, "errors": 1, "prompt_tokens": 20,
                              "completion_tokens": 1}
    assert len(json.loads(admin("usage", "--limit", "1", "--json").stdout)["rows"]) == 1
    text = admin("usage", "acme").stdout
    assert "rate_limited" in text and "2 requests (1 errors)" in text
    # Usage rows outlive their tenant.
    admin("tenant", "remove", "acme")
    assert len(json.loads(admin("usage", "acme", "--json").stdout)["rows"]) == 2


def test_default_database_location(realm_bin, tmp_path):
    data = tmp_path / "nested" / "data"
    env = {**os.environ, "REALM_DATA_DIR": str(data)}
    proc = subprocess.run([str(realm_bin), "tenant", "add", "acme"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (data / "realm.db").is_file()
    env = {k: v for k, v in os.environ.items() if k != "REALM_DATA_DIR"}
    env["HOME"] = str(tmp_path / "home")
    proc = subprocess.run([str(realm_bin), "tenant", "list", "--json"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    assert (tmp_path / "home" / ".local" / "share" / "realm" / "realm.db").is_file()


def test_not_a_database(admin, db):
    db.write_bytes(b"definitely not an SQLite file " * 100)
    assert_fails(admin("tenant", "list", check=False), 1, "store: open")
