"""The operator's view of a loopback worker (no token needed) is for this machine's own
pages: a page of another site that points its name at 127.0.0.1 (DNS rebinding) or posts
to it gets nothing, and ``/api/query`` (every factory's data) takes only the CLI's JSON
from a loopback client without a factory token, one query at a time. A real worker on
the embedded stack, real HTTP."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from streams.web.auth import from_this_machine
from tests.helpers.processes import Worker

pytestmark = [pytest.mark.integration]


def _call(port: int, method: str, path: str, headers: dict[str, str],
          body: bytes | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest(method, path, skip_host=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    raw = resp.read()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw.decode(errors="replace")


class _Req:
    def __init__(self, **headers: str) -> None:
        self.headers = headers


def test_what_counts_as_this_machine() -> None:
    for host in ("127.0.0.1:6066", "localhost:6066", "[::1]:6066", "LOCALHOST", "127.0.0.2"):
        assert from_this_machine(_Req(Host=host), "127.0.0.1"), host
    assert from_this_machine(_Req(Host="127.0.0.1:6066", Origin="http://localhost:6066"),
                             "127.0.0.1")
    assert from_this_machine(_Req(Host="10.0.0.5:6066"), "10.0.0.5")  # its bind address
    for req in (_Req(Host="attacker.example:6066"), _Req(),
                _Req(Host="127.0.0.1:6066", Origin="http://attacker.example"),
                _Req(Host="127.0.0.1:6066", Origin="null")):
        assert not from_this_machine(req, "127.0.0.1"), req.headers


def test_the_check_guards_the_loopback_operator_only(tmp_path: Path) -> None:
    """Bound to loopback (the default) a foreign Host is refused; a bind beyond loopback
    with C2M_WEB_REQUIRE_TOKEN=false is an explicit choice to serve everyone as the
    operator, and tokens (required beyond loopback by default) decide the rest."""
    from streams.core.tokens import Unauthorized
    from streams.settings import Settings
    from streams.web.auth import WebAuth

    loopback = WebAuth(Settings(data_dir=tmp_path))
    with pytest.raises(Unauthorized):
        loopback.scope(_Req(Host="attacker.example:6066"))
    assert loopback.scope(_Req(Host="127.0.0.1:6066")).kind == "operator"
    everyone = WebAuth(Settings(data_dir=tmp_path, web_host="0.0.0.0",  # noqa: S104
                                web_require_token=False))
    assert everyone.scope(_Req(Host="server.lan:6066")).kind == "operator"
    tokens = WebAuth(Settings(data_dir=tmp_path, web_host="0.0.0.0"))  # noqa: S104
    assert tokens.scope(_Req(Host="server.lan:6066")).kind == "market"
    # the writer's server listens on C2M_WRITER_HOST, not C2M_WEB_HOST
    writer = WebAuth(Settings(data_dir=tmp_path, web_require_token=False), "10.0.0.5")
    assert writer.scope(_Req(Host="10.0.0.5:6067")).kind == "operator"


def test_pages_of_other_sites_get_no_operator_data(
    worker_factory: Any, tmp_path: Path
) -> None:
    worker: Worker = worker_factory().start()
    worker.wait_consumed(0)
    port = worker.web_port
    own = {"Host": f"127.0.0.1:{port}"}
    rebinding = {"Host": f"attacker.example:{port}"}
    cross_site = {**own, "Origin": "http://attacker.example"}
    query = json.dumps({"sql": "SELECT 1 AS x"}).encode()
    as_json = {"Content-Type": "application/json"}

    # this machine's own pages and the CLI are served
    assert _call(port, "GET", "/api/view/summary", own)[0] == 200
    assert _call(port, "GET", "/api/alerts", own)[0] == 200
    status, body = _call(port, "POST", "/api/query", {**own, **as_json}, query)
    assert status == 200 and body["rows"] == [[1]], body
    # another site's name for 127.0.0.1, or another site's page: 401, nothing read
    for headers in (rebinding, cross_site):
        for path in ("/api/view/summary", "/api/alerts?all=1", "/api/brief?category=x"):
            status, body = _call(port, "GET", path, headers)
            assert status == 401 and "only this machine's own pages" in body["error"], path
        status, body = _call(port, "POST", "/api/query", {**headers, **as_json}, query)
        assert status == 401, body
    # a "simple" cross-site post (text/plain needs no CORS preflight) is refused
    status, body = _call(port, "POST", "/api/query",
                         {**own, "Content-Type": "text/plain"}, query)
    assert status == 415, body
    # a token on /api/query: a bad one is 401, a factory's may not read every factory
    bad = {**own, **as_json, "Authorization": "Bearer garbage"}
    assert _call(port, "POST", "/api/query", bad, query)[0] == 401
    # bodies that are not a query: 400, not a 500 or ClickHouse's syntax error
    for raw, extra in ((b'{"sql": null}', {}), (b'{"sql": ["SELECT 1"]}', {}),
                       (query, {"Content-Encoding": "gzip"})):
        status, body = _call(port, "POST", "/api/query", {**own, **as_json, **extra}, raw)
        assert status == 400, (raw, body)
    # one query at a time: a second one while the first runs is told to wait (429)
    slow = json.dumps({"sql": "SELECT sleepEachRow(1) FROM numbers(3)"}).encode()
    first: list[int] = []
    t = threading.Thread(target=lambda: first.append(
        _call(port, "POST", "/api/query", {**own, **as_json}, slow)[0]))
    t.start()
    time.sleep(1.0)
    status, body = _call(port, "POST", "/api/query", {**own, **as_json}, query)
    t.join(60)
    assert status == 429 and "another query" in body["error"], body
    assert first == [200]
    # numbers in other scripts, and all=false: client mistakes are 400, all=false means open
    for path in ("/api/view/breakdown?limit=%C2%B2", "/api/view/rolling?limit=" + "9" * 5000,
                 "/api/brief?days=%C2%B2", "/api/brief?days=-1", "/api/alerts?all=maybe"):
        status, body = _call(port, "GET", path, own)
        assert status == 400, (path, status, body)
    assert _call(port, "GET", "/api/alerts?all=false", own)[0] == 200
    assert worker.stop() == 0
