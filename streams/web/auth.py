"""Who a web request is (``streams.core.tokens.scope_of``) for the worker's pages.

Tokens are required for factory data when the web server is bound beyond loopback (or
``C2M_WEB_REQUIRE_TOKEN``); the decision is made from the bind address, never from the
client's address, so a reverse proxy on the same machine does not make everyone an
operator. The operator (no token, loopback bind) is served only to this machine's own
pages: ``from_this_machine`` refuses another site's name for 127.0.0.1 (DNS rebinding)
and another site's ``Origin``. Tokens and hashes are never logged; a refused request is
answered with one line.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from streams.core.tokens import Scope, Unauthorized, scope_of
from streams.errors import ConfigError
from streams.settings import Settings, is_loopback_host
from streams.tokenstore import TokenStore

log = logging.getLogger(__name__)


def _hostname(value: str) -> str:
    """The host of a ``Host`` header or an ``Origin`` (without port, brackets, case)."""
    value = value.strip().lower()
    if "://" in value:
        value = urlsplit(value).netloc
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def from_this_machine(request: Any, bind_host: str) -> bool:
    """The request names this server by a loopback name or its bind address (``Host``),
    and comes from no other site (``Origin`` absent or loopback). A page of another site
    that points its own name at 127.0.0.1 (DNS rebinding) sends its own name as Host;
    a cross-site form or fetch sends its Origin."""
    host = _hostname(request.headers.get("Host", ""))
    if not (is_loopback_host(host) or host == bind_host.strip().lower()):
        return False
    origin = request.headers.get("Origin")
    return origin is None or is_loopback_host(_hostname(origin))


class WebAuth:
    def __init__(self, settings: Settings, bind_host: str | None = None) -> None:
        """``bind_host``: the address the web server listens on (C2M_WEB_HOST; the
        writer's is C2M_WRITER_HOST)."""
        self.required = settings.tokens_required
        self.bind_host = settings.web_host if bind_host is None else bind_host
        #: bound to loopback: only this machine's pages are the operator (a bind beyond
        #: loopback without tokens, C2M_WEB_REQUIRE_TOKEN=false, is an explicit choice to
        #: serve everyone that reaches it as the operator)
        self.loopback = is_loopback_host(self.bind_host)
        self.store = TokenStore(settings.effective_web_tokens_file, settings.web_tokens)

    def scope(self, request: Any) -> Scope:
        """The request's scope; Unauthorized for a bad token (or an unreadable store), or
        for a request without a token that would be the operator but is not from this
        machine's own pages (``from_this_machine``)."""
        try:
            tokens = self.store.tokens()
        except ConfigError as exc:
            log.warning("web tokens unavailable: %s", exc)
            raise Unauthorized("tokens unavailable") from None
        scope = scope_of(request.headers, tokens, self.required)
        if (scope.kind == "operator" and self.loopback
                and not from_this_machine(request, self.bind_host)):
            raise Unauthorized("without a token only this machine's own pages are served: "
                               "open the view at http://127.0.0.1:<port>/view, or send a "
                               "factory token")
        return scope


def unauthorized(web: Any, why: str) -> Any:
    return web.json({"error": why}, status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="c2m"'})


def forbidden(web: Any, why: str) -> Any:
    return web.json({"error": why}, status=403)
