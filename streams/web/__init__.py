"""The built-in web view (embedded mode, for people without Grafana).

``GET /view`` serves one self-contained HTML page (inline SVG charts, no external
resources: it works offline); the page fetches ``GET /api/view/{name}?...`` (JSON, the
queries of :mod:`streams.clickhouse.views`) every few seconds. The queries run on the
pipeline's ClickHouse thread, like every other ClickHouse call of the worker.

Every API request is scoped (``streams.web.auth``): the demand sections are market-level
(k-anonymous) for everyone; open alerts and the brief are the token's factory's (the
page reads a token from ``/view#token=...`` and sends it as a Bearer header).
"""

from __future__ import annotations

import importlib.resources
import logging
from typing import Any

from streams.clickhouse.views import BadRequest, Forbidden, run_view
from streams.core.tokens import Unauthorized
from streams.errors import SinkError
from streams.web.auth import WebAuth, unauthorized

log = logging.getLogger(__name__)


def page_html() -> str:
    return importlib.resources.files(__package__).joinpath("view.html").read_text("utf-8")


def register_web_view(app: Any, pulse: Any) -> None:
    """Add ``/view`` and ``/api/view/{name}`` to the Faust app's web server."""
    html = page_html()
    database = pulse.settings.clickhouse_database
    auth = WebAuth(pulse.settings)

    @app.page("/view")  # type: ignore[untyped-decorator]
    async def view_page(web: Any, request: Any) -> Any:
        return web.html(html)

    @app.page("/api/view/{name}")  # type: ignore[untyped-decorator]
    async def view_api(web: Any, request: Any, name: str) -> Any:
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
