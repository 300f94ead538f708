"""Per-factory web tokens (pure): creation, the hashed token store, verification, and who a
request is.

A token is ``c2m_`` + 32 random bytes in URL-safe base64 (256 bits), printed once by
``c2m token create --factory F`` and never stored: the store keeps its SHA-256 (a slow
hash adds nothing to 256 random bits) with the factory it belongs to. A presented token
is hashed and compared with every stored hash by ``hmac.compare_digest``, all of them
every time, so neither the result nor the time tells which entry was close.

The store is JSON (``{"tokens": [{"factory", "sha256", "id", "created"}]}``): a file
(``C2M_WEB_TOKENS_FILE``) and/or the same JSON in ``C2M_WEB_TOKENS``. ``id`` is the first
8 hex digits of the hash: enough to name a token in ``c2m token list`` / ``revoke``, useless
to forge one.

Who a request is (``scope_of``): a request with ``Authorization: Bearer <token>`` is the
token's factory, and a bad token is refused (401), whatever the address; without one it is
the operator while the web server is bound to loopback (the single-machine default, as
before tokens existed) and the *market* (market-level views only) when tokens are required
(the server is bound beyond loopback, or ``C2M_WEB_REQUIRE_TOKEN``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

PREFIX: Final = "c2m_"
#: characters of a token: the prefix and 43 of URL-safe base64 (32 bytes, no padding)
TOKEN_LENGTH: Final = len(PREFIX) + 43


class TokenError(ValueError):
    """A token store that cannot be read, or an Authorization header that is not a token."""


def new_token() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class TokenEntry:
    factory: str
    sha256: str  # hex
    created: str = ""

    @property
    def id(self) -> str:
        return self.sha256[:8]

    def as_dict(self) -> dict[str, str]:
        return {"factory": self.factory, "sha256": self.sha256, "id": self.id,
                "created": self.created}


def entry_for(token: str, factory: str, now: datetime | None = None) -> TokenEntry:
    """The stored form of a new token (its hash, never the token)."""
    created = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return TokenEntry(factory, token_digest(token).hex(), created)


def parse_store(text: str) -> list[TokenEntry]:
    """Entries of a store document; TokenError (without echoing the text) if malformed."""
    try:
        doc = json.loads(text) if text.strip() else {"tokens": []}
        entries = []
        for item in doc["tokens"]:
            factory, digest = item["factory"], item["sha256"]
            if not (isinstance(factory, str) and factory and isinstance(digest, str)
                    and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
                raise ValueError
            entries.append(TokenEntry(factory, digest, str(item.get("created", ""))))
    except (ValueError, KeyError, TypeError):
        raise TokenError("the token store is not valid JSON of the form "
                         '{"tokens": [{"factory": ..., "sha256": <64 hex>}]}') from None
    return entries


def dump_store(entries: Iterable[TokenEntry]) -> str:
    return json.dumps({"tokens": [e.as_dict() for e in entries]}, indent=2,
                      ensure_ascii=False) + "\n"


class TokenSet:
    """Verifies presented tokens against stored hashes, in constant time per entry."""

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self._entries = [(bytes.fromhex(e.sha256), e.factory) for e in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def factory_of(self, token: str) -> str | None:
        """The factory a token belongs to, or None. Every entry is compared, always."""
        digest = token_digest(token)
        found: str | None = None
        for stored, factory in self._entries:
            if hmac.compare_digest(digest, stored):
                found = factory
        return found


@dataclass(frozen=True, slots=True)
class Scope:
    """Who a request is: the operator (everything), one factory (its alerts, SKUs and
    brief plus the market-level views) or the market (market-level views only)."""

    kind: Literal["operator", "factory", "market"]
    factory: str = ""


OPERATOR: Final = Scope("operator")
MARKET: Final = Scope("market")


class Unauthorized(Exception):
    """A request that presented a token that is not one (HTTP 401)."""


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None without the header;
    TokenError for any other form of it."""
    value = headers.get("Authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token or len(token) > 256:
        raise TokenError("Authorization must be 'Bearer <token>'")
    return token


def scope_of(headers: Mapping[str, str], tokens: TokenSet, require_token: bool) -> Scope:
    """The scope of a request (module doc). Raises Unauthorized for a bad token."""
    try:
        token = bearer(headers)
    except TokenError as exc:
        raise Unauthorized(str(exc)) from None
    if token is None:
        return MARKET if require_token else OPERATOR
    factory = tokens.factory_of(token)
    if factory is None:
        raise Unauthorized("unknown or revoked token")
    return Scope("factory", factory)


def describe(entries: Iterable[TokenEntry]) -> list[dict[str, Any]]:
    """What ``c2m token list`` shows: no hash, no token."""
    return [{"factory": e.factory, "id": e.id, "created": e.created} for e in entries]
