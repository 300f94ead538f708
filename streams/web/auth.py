"""Who a web request is (``streams.core.tokens.scope_of``) for the worker's pages.

Tokens are required for factory data when the web server is bound beyond loopback (or
``C2M_WEB_REQUIRE_TOKEN``); the decision is made from the bind address, never from the
client's address, so a reverse proxy on the same machine does not make everyone an
operator. Tokens and hashes are never logged; a refused request is answered with one line.
"""

from __future__ import annotations

import logging
from typing import Any

from streams.core.tokens import Scope, Unauthorized, scope_of
from streams.errors import ConfigError
from streams.settings import Settings
from streams.tokenstore import TokenStore

log = logging.getLogger(__name__)


class WebAuth:
    def __init__(self, settings: Settings) -> None:
        self.required = settings.tokens_required
        self.store = TokenStore(settings.effective_web_tokens_file, settings.web_tokens)

    def scope(self, request: Any) -> Scope:
        """The request's scope; Unauthorized for a bad token (or an unreadable store)."""
        try:
            tokens = self.store.tokens()
        except ConfigError as exc:
            log.warning("web tokens unavailable: %s", exc)
            raise Unauthorized("tokens unavailable") from None
        return scope_of(request.headers, tokens, self.required)


def unauthorized(web: Any, why: str) -> Any:
    return web.json({"error": why}, status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="c2m"'})


def forbidden(web: Any, why: str) -> Any:
    return web.json({"error": why}, status=403)
