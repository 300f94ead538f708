"""Web tokens: created once, stored hashed, verified in constant time; who a request is;
`c2m token create` prints the token once and keeps only its hash."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from streams.app import scoped_factory
from streams.core import tokens as tk
from streams.settings import Settings
from streams.tokenstore import TokenStore


def test_tokens_are_random_and_only_their_hash_is_stored(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.json")
    a, ea = store.create("F001")
    b, _ = store.create("义乌袜厂")
    assert a != b and a.startswith(tk.PREFIX) and len(a) == tk.TOKEN_LENGTH
    text = (tmp_path / "t.json").read_text()
    assert a not in text and b not in text and a[len(tk.PREFIX):] not in text
    assert ea.sha256 in text and stat.S_IMODE((tmp_path / "t.json").stat().st_mode) == 0o600
    tokens = store.tokens()
    assert tokens.factory_of(a) == "F001" and tokens.factory_of(b) == "义乌袜厂"
    for wrong in (a[:-1], a + "x", a.upper(), "", a[len(tk.PREFIX):], ea.sha256, " " + a):
        assert tokens.factory_of(wrong) is None, wrong
    # revoke: gone at the next request, the other stays
    assert [e.factory for e in store.revoke(ea.id)] == ["F001"]
    assert store.tokens().factory_of(a) is None and store.tokens().factory_of(b) == "义乌袜厂"


def test_every_entry_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: the comparisons do not depend on where (or whether) the match is."""
    calls: list[int] = []
    real = tk.hmac.compare_digest

    def counting(x: bytes, y: bytes) -> bool:
        calls.append(1)
        return real(x, y)

    monkeypatch.setattr(tk.hmac, "compare_digest", counting)
    t = [tk.new_token() for _ in range(5)]
    tokens = tk.TokenSet([tk.entry_for(x, f"F{i}") for i, x in enumerate(t)])
    for probe in (t[0], t[4], "nope"):
        calls.clear()
        tokens.factory_of(probe)
        assert len(calls) == 5


def test_env_tokens_and_bad_stores(tmp_path: Path) -> None:
    t = tk.new_token()
    env = tk.dump_store([tk.entry_for(t, "F002")])
    assert TokenStore(tmp_path / "none.json", env).tokens().factory_of(t) == "F002"
    from streams.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        TokenStore(tmp_path / "x.json", '{"tokens": [{"factory": "F", "sha256": "' + t + '"}]}')
    assert t not in str(err.value)  # never echoes what it could not parse
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(ConfigError):
        TokenStore(tmp_path / "bad.json").tokens()


def test_scope_of_a_request() -> None:
    t = tk.new_token()
    tokens = tk.TokenSet([tk.entry_for(t, "F001")])
    assert tk.scope_of({}, tokens, require_token=False) == tk.OPERATOR
    assert tk.scope_of({}, tokens, require_token=True) == tk.MARKET
    for required in (False, True):
        assert tk.scope_of({"Authorization": f"Bearer {t}"}, tokens, required) == tk.Scope(
            "factory", "F001")
        assert tk.scope_of({"Authorization": f"bearer  {t} "}, tokens, required).factory == "F001"
        for bad in (f"Bearer {t}x", f"Basic {t}", t, "Bearer", f"Bearer {t} {t}", "Bearer  ",
                    "Bearer " + "a" * 300):
            with pytest.raises(tk.Unauthorized):
                tk.scope_of({"Authorization": bad}, tokens, required)


def test_a_request_never_reads_beyond_its_scope() -> None:
    f = tk.Scope("factory", "F001")
    assert scoped_factory(f, []) == "F001" and scoped_factory(f, ["F001"]) == "F001"
    for asked in (["F002"], ["F001", "F002"], ["F001 "], ["f001"], ["' OR 1=1 --"], [""] * 2):
        with pytest.raises(PermissionError):
            scoped_factory(f, asked)
    assert scoped_factory(tk.MARKET, []) == ""
    with pytest.raises(PermissionError):
        scoped_factory(tk.MARKET, ["F001"])
    assert scoped_factory(tk.OPERATOR, ["F002"]) == "F002"


def test_tokens_are_required_beyond_loopback() -> None:
    for host, required in (("127.0.0.1", False), ("::1", False), ("localhost", False),
                           ("127.0.0.2", False), ("0.0.0.0", True), ("::", True),  # noqa: S104
                           ("10.0.0.5", True), ("worker", True)):
        assert Settings(web_host=host).tokens_required is required, host
    assert Settings(web_host="127.0.0.1", web_require_token=True).tokens_required
    assert not Settings(web_host="0.0.0.0", web_require_token=False).tokens_required  # noqa: S104


def _c2m(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "C2M_DATA_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_token_create_prints_the_token_once(tmp_path: Path) -> None:
    out = _c2m(tmp_path, "token", "create", "--factory", "F001")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith(tk.PREFIX) and "\n" not in token
    stored = json.loads((tmp_path / "web-tokens.json").read_text())["tokens"]
    assert [e["factory"] for e in stored] == ["F001"]
    assert token not in (tmp_path / "web-tokens.json").read_text()
    assert token not in out.stderr
    listed = _c2m(tmp_path, "token", "list")
    assert listed.returncode == 0 and "F001" in listed.stdout
    assert token not in listed.stdout and stored[0]["sha256"] not in listed.stdout
    # a user mistake: one line, non-zero, no traceback
    bad = _c2m(tmp_path, "token", "create", "--factory", "")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    gone = _c2m(tmp_path, "token", "revoke", "--id", "deadbeef")
    assert gone.returncode == 1 and "Traceback" not in gone.stderr
