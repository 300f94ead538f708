"""deploy/grafana/factory_orgs.py (the compose stack's grafana-init) against a stand-in of
Grafana's HTTP API that keeps state like Grafana does (orgs, data sources per org,
dashboards per org, users and memberships). There is no Grafana here: this checks what
the script asks for, and that running it twice changes nothing more."""

from __future__ import annotations

import base64
import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "Basic " + base64.b64encode(b"admin:pw").decode()


def _load() -> Any:
    spec = importlib.util.spec_from_file_location(
        "factory_orgs", ROOT / "deploy/grafana/factory_orgs.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class FakeGrafana:
    def __init__(self) -> None:
        self.orgs: dict[int, str] = {1: "Main Org."}
        self.datasources: dict[tuple[int, str], dict[str, Any]] = {}
        self.dashboards: dict[tuple[int, str], dict[str, Any]] = {}
        self.users: dict[str, int] = {"admin": 1}
        self.members: dict[tuple[int, int], str] = {(1, 1): "Admin"}
        self.calls: list[tuple[str, str]] = []

    def handle(self, method: str, path: str, org: int, body: Any) -> tuple[int, Any]:
        self.calls.append((method, path))
        if method == "POST" and path == "/api/orgs":
            if body["name"] in self.orgs.values():
                return 409, {"message": "exists"}
            oid = max(self.orgs) + 1
            self.orgs[oid] = body["name"]
            self.members[(oid, 1)] = "Admin"
            return 200, {"orgId": oid}
        if method == "GET" and path.startswith("/api/orgs/name/"):
            name = path.rsplit("/", 1)[1].replace("%20", " ")
            return 200, {"id": next(i for i, n in self.orgs.items() if n == name)}
        if path.startswith("/api/datasources"):
            assert (org, 1) in self.members, "the admin must belong to the org"
            uid = path.rsplit("/", 1)[1] if "/uid/" in path else body["uid"]
            if method == "GET":
                ds = self.datasources.get((org, uid))
                return (404, None) if ds is None else (200, ds)
            if method == "POST" and (org, uid) in self.datasources:
                return 409, None
            self.datasources[(org, uid)] = body
            return 200, {}
        if method == "POST" and path == "/api/dashboards/db":
            self.dashboards[(org, body["dashboard"]["uid"])] = body["dashboard"]
            return 200, {}
        if method == "POST" and path == "/api/admin/users":
            if body["login"] in self.users:
                return 412, None
            uid = max(self.users.values()) + 1
            self.users[body["login"]] = uid
            self.members[(body["OrgId"], uid)] = "Viewer"
            self.members[(1, uid)] = "Viewer"  # as if auto-assign were on
            return 200, {"id": uid}
        if method == "GET" and path.startswith("/api/users/lookup"):
            return 200, {"id": self.users[path.split("=", 1)[1]]}
        if method == "POST" and path.endswith("/users"):
            oid = int(path.split("/")[3])
            uid = self.users[body["loginOrEmail"]]
            if (oid, uid) in self.members:
                return 409, None
            self.members[(oid, uid)] = body["role"]
            return 200, {}
        if method == "PATCH":
            _, _, _, oid, _, uid = path.split("/")
            self.members[(int(oid), int(uid))] = body["role"]
            return 200, {}
        if method == "DELETE":
            _, _, _, oid, _, uid = path.split("/")
            return (200, {}) if self.members.pop((int(oid), int(uid)), None) else (404, None)
        return 404, None


@pytest.fixture
def grafana() -> Any:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _do(self) -> None:
            assert self.headers["Authorization"] == ADMIN
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n)) if n else None
            org = int(self.headers.get("X-Grafana-Org-Id") or 1)
            status, out = fake.handle(self.command, self.path, org, body)
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _do

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield fake
    server.shutdown()


def test_each_factory_gets_an_org_with_only_its_own_clickhouse_user(grafana: Any) -> None:
    mod = _load()
    g = mod.Grafana(grafana.url, "admin", "pw")
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/factory-demand.json").read_text())
    env = {"CLICKHOUSE_PASSWORD_F001": "ch1", "GRAFANA_PASSWORD_F001": "gf1",
           "CLICKHOUSE_PASSWORD_F002": "ch2", "GRAFANA_PASSWORD_F002": "gf2"}
    for _ in range(2):  # idempotent
        lines = mod.provision(g, ["F001", "F002"], env, dashboard)
        assert all("ch1" not in ln and "gf1" not in ln for ln in lines)
    orgs = {n: i for i, n in grafana.orgs.items()}
    assert set(orgs) == {"Main Org.", "Factory F001", "Factory F002"}
    for f, pw in (("F001", "ch1"), ("F002", "ch2")):
        org = orgs[f"Factory {f}"]
        # the org's only data source logs in as the factory's read-only user
        assert [k for k in grafana.datasources if k[0] == org] == [(org, "c2m-clickhouse")]
        ds = grafana.datasources[(org, "c2m-clickhouse")]
        assert ds["jsonData"]["username"] == f"c2m_factory_{f}"
        assert ds["secureJsonData"]["password"] == pw
        assert grafana.dashboards[(org, "c2m-factory-demand")]["title"] == "Factory demand"
        uid = grafana.users[f"factory-{f}"]
        assert grafana.members[(org, uid)] == "Viewer"
        # in no other organisation, the operators' included
        assert {o for o, u in grafana.members if u == uid} == {org}
    assert not any(k[0] == 1 for k in grafana.datasources)  # the main org is not touched


def test_missing_passwords_fail_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    mod = _load()
    monkeypatch.setenv("C2M_FACTORIES", "F001")
    monkeypatch.setenv("GRAFANA_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("CLICKHOUSE_PASSWORD_F001", raising=False)
    assert mod.main() == 2
    err = capsys.readouterr().err
    assert "CLICKHOUSE_PASSWORD_F001" in err and len(err.strip().splitlines()) == 1
