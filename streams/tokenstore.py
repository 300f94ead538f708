"""The web token store on disk (``C2M_WEB_TOKENS_FILE``) and in ``C2M_WEB_TOKENS``.

Only hashes are stored (``streams.core.tokens``). The file is written with mode 0600 by
replacing it atomically; a worker rereads it when its modification time changes, so a
token created or revoked while the worker runs takes effect at the next request.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from streams.core.tenancy import check_factory_id
from streams.core.tokens import (
    TokenEntry,
    TokenError,
    TokenSet,
    dump_store,
    entry_for,
    new_token,
    parse_store,
)
from streams.errors import ConfigError


class TokenStore:
    def __init__(self, path: Path, env_json: str | None = None) -> None:
        self.path = path
        self.env_json = env_json
        self._stamp: tuple[int, int] | None = None
        self._set = TokenSet([])
        try:
            self._env = parse_store(env_json) if env_json else []
        except TokenError as exc:
            raise ConfigError(f"C2M_WEB_TOKENS: {exc}") from None

    def _read_file(self) -> list[TokenEntry]:
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {self.path}: "
                              f"{exc.strerror or type(exc).__name__}") from None
        try:
            return parse_store(text)
        except TokenError as exc:
            raise ConfigError(f"{self.path}: {exc}") from None

    def entries(self) -> list[TokenEntry]:
        return [*self._read_file(), *self._env]

    def tokens(self) -> TokenSet:
        """The current token set, reread when the file changed."""
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp or self._stamp is None:
            self._set = TokenSet(self.entries())
            self._stamp = stamp
        return self._set

    def _write(self, entries: list[TokenEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(dump_store(entries))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def create(self, factory: str) -> tuple[str, TokenEntry]:
        """A new token for ``factory`` (returned once; only its hash is written)."""
        check_factory_id(factory)
        token = new_token()
        entry = entry_for(token, factory)
        self._write([*self._read_file(), entry])
        return token, entry

    def revoke(self, token_id: str) -> list[TokenEntry]:
        """Remove the file's entries whose id is ``token_id``; returns them."""
        entries = self._read_file()
        gone = [e for e in entries if e.id == token_id]
        if gone:
            self._write([e for e in entries if e.id != token_id])
        return gone
