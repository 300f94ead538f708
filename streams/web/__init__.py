"""The built-in web view (embedded mode, for people without Grafana).

``GET /view`` serves one self-contained HTML page (inline SVG charts, no external
resources: it works offline); the page fetches ``GET /api/view/{name}?...`` (JSON, the
queries of :mod:`streams.clickhouse.views`) every few seconds, and ``GET /api/view/market``
once: the market's time zone (``C2M_TIMEZONE``), its short name and UTC offset now (the
browser has no short name for some zones, e.g. China's CST). Times on the page are the
market's, with the zone; the viewer's own time is added where the browser's zone differs.
The queries run on the pipeline's ClickHouse thread, like every other ClickHouse call of
the worker.

``POST /api/query`` (loopback clients only) runs one read-only statement for ``c2m
query``: with the embedded ClickHouse only this process may open the engine.

Every API request is scoped (``streams.web.auth``, docs/SECURITY.md): the demand sections
are market-level (k-anonymous) for everyone; open alerts and the brief are the token's
factory's (the page reads a token from ``/view#token=...`` and sends it as a Bearer
header). ``/api/query`` reads every factory's data: it is refused whenever the server
requires tokens (bound beyond loopback), whoever asks.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import logging
import time
from datetime import UTC, datetime
from typing import Any

from faust import web as faust_web

from streams.clickhouse.views import BadRequest, Forbidden, run_view
from streams.core.tokens import Unauthorized
from streams.errors import SinkError, SinkRejected
from streams.query import MAX_ROWS, StatementError, readonly_session, run_readonly
from streams.settings import mask_url
from streams.web.auth import WebAuth, unauthorized

log = logging.getLogger(__name__)


def page_html() -> str:
    return importlib.resources.files(__package__).joinpath("view.html").read_text("utf-8")


def is_loopback(remote: str | None) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def market_zone(calendar: Any, now_s: int | None = None) -> dict[str, Any]:
    """``/api/view/market``: {"timezone", "abbreviation", "utc_offset_minutes"} now."""
    now = int(time.time()) if now_s is None else now_s
    offset = datetime.fromtimestamp(now, UTC).astimezone(calendar.zone).utcoffset()
    return {
        "timezone": calendar.timezone,
        "abbreviation": calendar.abbreviation(now),
        "utc_offset_minutes": int(offset.total_seconds() // 60) if offset is not None else 0,
    }


def register_web_view(app: Any, pulse: Any) -> None:
    """Add ``/view``, ``/api/view/{name}`` and ``/api/query`` to the Faust app's web server."""
    html = page_html()
    database = pulse.settings.clickhouse_database
    calendar = pulse.settings.calendar()
    auth = WebAuth(pulse.settings)

    @app.page("/view")  # type: ignore[untyped-decorator]
    async def view_page(web: Any, request: Any) -> Any:
        return web.html(html)

    @app.page("/api/view/{name}")  # type: ignore[untyped-decorator]
    async def view_api(web: Any, request: Any, name: str) -> Any:
        if name == "market":  # what the page needs to show local times, no query
            return web.json(market_zone(calendar))
        args = {k: v for k, v in request.query.items()}
        try:
            scope = auth.scope(request)
            body = await pulse.pipeline.io(run_view, pulse.client, database, name, args, scope)
        except (Unauthorized, Forbidden) as exc:
            return unauthorized(web, str(exc))
        except BadRequest as exc:
            return web.json({"error": str(exc)}, status=400)
        except SinkError as exc:
            log.warning("web view query %s failed: %s", name, exc)
            return web.json({"error": "ClickHouse unavailable"}, status=503)
        return web.json(body)

    clickhouse = mask_url(pulse.settings.effective_clickhouse_url)
    session: list[tuple[Any, dict[str, Any] | None]] = []  # opened at the first query
    busy: list[bool] = []  # a query is running

    def readonly_query(sql: str) -> Any:
        if not session:
            session.append(readonly_session(pulse.settings))
        client, settings = session[0]
        return run_readonly(client, sql, MAX_ROWS, settings)

    @app.page("/api/query")
    class QueryView(faust_web.View):
        """``c2m query`` through the process that owns ClickHouse (read-only)."""

        async def post(self, request: Any) -> Any:
            if auth.required:  # every factory's data: never where tokens are needed
                return self.json({"error": "c2m query through a worker is off while its web "
                                  "server needs tokens: query ClickHouse directly"}, status=403)
            if not is_loopback(getattr(request, "remote", None)):
                return self.json({"error": "c2m query through a worker is for this machine "
                                  "only"}, status=403)
            try:
                scope = auth.scope(request)  # a bad token, or a page of another site
            except Unauthorized as exc:
                return unauthorized(self, str(exc))
            if scope.kind != "operator":
                return self.json({"error": "c2m query reads every factory's data: not with a "
                                  "factory token"}, status=403)
            if request.content_type != "application/json":
                # a page of another site can post text/plain without asking the server first
                return self.json({"error": 'expected Content-Type: application/json'},
                                 status=415)
            if pulse.client is None:
                return self.json({"error": "this worker writes through c2m.sink: query the "
                                  "writer's ClickHouse"}, status=503)
            try:
                body = await request.json()
                sql = body["sql"]
            except Exception:  # not JSON, a bad Content-Encoding, not an object
                return self.json({"error": 'expected JSON {"sql": "..."}'}, status=400)
            if not isinstance(sql, str):
                return self.json({"error": 'expected JSON {"sql": "..."}'}, status=400)
            if busy:
                # one at a time, on the ClickHouse thread the flushes use: a queue of
                # queries would hold the pipeline's writes and every view behind it
                return self.json({"error": "another query is running through this worker: "
                                  "try again when it is done"}, status=429)
            busy.append(True)
            try:
                result = await pulse.pipeline.io(readonly_query, sql)
            except StatementError as exc:
                return self.json({"error": str(exc)}, status=400)
            except SinkRejected as exc:
                return self.json({"error": str(exc)}, status=422)
            except SinkError as exc:
                return self.json({"error": str(exc)}, status=503)
            finally:
                busy.clear()
            return self.json({"columns": result.columns, "rows": result.rows,
                              "truncated": result.truncated, "clickhouse": clickhouse})
