"""One Grafana organisation per factory (the compose stack's grafana-init service).

Grafana OSS has no per-data-source permissions: any member of an organisation can query
any of its data sources. So operators keep the main organisation (the provisioned
ClickHouse data source with the pipeline's user, both dashboards), and each factory gets
an organisation of its own that holds only:

- a ClickHouse data source (uid ``c2m-clickhouse``, as the dashboards expect) that logs in
  as the factory's read-only ClickHouse user (``c2m db grant``: row policies, the market
  views), so even a hand-written query sees nothing of another factory;
- the "Factory demand" dashboard (its factory variable lists what that user may read:
  the factory itself);
- a Viewer login ``factory-<component>`` that belongs to no other organisation
  (GF_USERS_AUTO_ASSIGN_ORG=false in docker-compose.yml).

Idempotent: run again, it updates the data source and dashboard and leaves the rest.
Environment: GRAFANA_URL, GRAFANA_ADMIN_USER, GRAFANA_ADMIN_PASSWORD, C2M_FACTORIES
(comma-separated ids), and per factory CLICKHOUSE_PASSWORD_<ID> (its ClickHouse user's
password) and GRAFANA_PASSWORD_<ID> (its Viewer's), <ID> the id with every character
outside [A-Za-z0-9] as '_', upper-cased. Prints one line per factory; never a password.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from streams.core.tenancy import clickhouse_user, component

DASHBOARD = Path(__file__).resolve().parent / "dashboards" / "factory-demand.json"
DATASOURCE_UID = "c2m-clickhouse"


class GrafanaError(RuntimeError):
    pass


class Grafana:
    def __init__(self, url: str, user: str, password: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise GrafanaError("GRAFANA_URL must be an http(s) URL")
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.auth = f"Basic {token}"

    def call(self, method: str, path: str, body: Any = None, org: int | None = None,
             ok: tuple[int, ...] = ()) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Authorization", self.auth)
        req.add_header("Content-Type", "application/json")
        if org is not None:
            req.add_header("X-Grafana-Org-Id", str(org))
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - http(s) URL
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return exc.code, None
            raise GrafanaError(f"{method} {path}: HTTP {exc.code}") from None


def env_key(factory: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", factory).upper()


def ensure_org(g: Grafana, name: str) -> int:
    status, body = g.call("POST", "/api/orgs", {"name": name}, ok=(409,))
    if status == 409:
        _, found = g.call("GET", "/api/orgs/name/" + urllib.parse.quote(name, safe=""))
        return int(found["id"])
    return int(body["orgId"])


def ensure_datasource(g: Grafana, org: int, user: str, password: str) -> None:
    ds = {
        "name": "ClickHouse", "uid": DATASOURCE_UID, "type": "grafana-clickhouse-datasource",
        "access": "proxy", "isDefault": True,
        "jsonData": {"host": "clickhouse", "port": 8123, "protocol": "http",
                     "username": user, "defaultDatabase": "c2m"},
        "secureJsonData": {"password": password},
    }
    status, _ = g.call("GET", f"/api/datasources/uid/{DATASOURCE_UID}", org=org, ok=(404,))
    if status == 404:
        g.call("POST", "/api/datasources", ds, org=org)
    else:
        g.call("PUT", f"/api/datasources/uid/{DATASOURCE_UID}", ds, org=org)


def import_dashboard(g: Grafana, org: int, dashboard: dict[str, Any]) -> None:
    g.call("POST", "/api/dashboards/db",
           {"dashboard": {**dashboard, "id": None}, "overwrite": True}, org=org)


def ensure_viewer(g: Grafana, org: int, login: str, password: str) -> None:
    status, body = g.call("POST", "/api/admin/users",
                          {"name": login, "login": login, "password": password, "OrgId": org},
                          ok=(409, 412))
    if status in (409, 412):
        _, found = g.call("GET", "/api/users/lookup?loginOrEmail="
                          + urllib.parse.quote(login, safe=""))
        user_id = int(found["id"])
        g.call("POST", f"/api/orgs/{org}/users", {"loginOrEmail": login, "role": "Viewer"},
               ok=(409,))
    else:
        user_id = int(body["id"])
    g.call("PATCH", f"/api/orgs/{org}/users/{user_id}", {"role": "Viewer"})
    if org != 1:  # never in the operators' organisation
        g.call("DELETE", f"/api/orgs/1/users/{user_id}", ok=(400, 404))


def provision(g: Grafana, factories: list[str], env: dict[str, str],
              dashboard: dict[str, Any]) -> list[str]:
    done = []
    for factory in factories:
        key = env_key(factory)
        ch_password = env.get(f"CLICKHOUSE_PASSWORD_{key}", "")
        viewer_password = env.get(f"GRAFANA_PASSWORD_{key}", "")
        if not ch_password or not viewer_password:
            raise GrafanaError(f"set CLICKHOUSE_PASSWORD_{key} and GRAFANA_PASSWORD_{key}")
        org = ensure_org(g, f"Factory {factory}")
        ensure_datasource(g, org, clickhouse_user(factory), ch_password)
        import_dashboard(g, org, dashboard)
        login = f"factory-{component(factory)}"
        ensure_viewer(g, org, login, viewer_password)
        done.append(f"factory {factory}: organisation {org}, viewer {login}, ClickHouse user "
                    f"{clickhouse_user(factory)}")
    return done


def main() -> int:
    env = dict(os.environ)
    g = Grafana(env.get("GRAFANA_URL", "http://grafana:3000"),
                env.get("GRAFANA_ADMIN_USER", "admin"), env.get("GRAFANA_ADMIN_PASSWORD", ""))
    factories = [f.strip() for f in env.get("C2M_FACTORIES", "").split(",") if f.strip()]
    wanted = [f"{kind}_PASSWORD_{env_key(f)}" for f in factories
              for kind in ("CLICKHOUSE", "GRAFANA")]
    missing = [name for name in wanted if not env.get(name)]
    if missing:
        print(f"grafana-init: set {', '.join(missing)}", file=sys.stderr)
        return 2
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for attempt in range(30):  # Grafana answers its health check before its API is ready
        try:
            for line in provision(g, factories, env, dashboard):
                print(line, flush=True)
            return 0
        except (GrafanaError, OSError) as exc:
            if attempt == 29:
                print(f"grafana-init: {exc}", file=sys.stderr)
                return 1
            time.sleep(2)
    return 1


if __name__ == "__main__":
    sys.exit(main())
