"""Bearer API keys mapped to scopes.

Scopes are ``<department>:read`` / ``<department>:write`` (write implies read),
special ones such as ``identity:pii``, and ``admin`` (everything). Keys come from
the environment or secret files (``SOCIALZONE_API_KEYS``, ``SOCIALZONE_ADMIN_KEY``),
and are kept in memory only as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from socialzone_common.errors import Forbidden, Unauthorized
from socialzone_common.settings import ServiceSettings

ADMIN = "admin"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        if ADMIN in self.scopes or scope in self.scopes:
            return True
        department, _, action = scope.partition(":")
        return action == "read" and f"{department}:write" in self.scopes


class KeyRing:
    def __init__(self, principals_by_digest: dict[str, Principal]) -> None:
        self._by_digest = principals_by_digest

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> KeyRing:
        keys: dict[str, Principal] = {}
        for api_key in settings.api_keys:
            key_digest = api_key.sha256.lower() if api_key.sha256 else digest(api_key.key.get_secret_value())
            keys[key_digest] = Principal(api_key.name, frozenset(api_key.scopes))
        # The data folder's admin.key is ``make run``'s convenience: production takes its
        # keys from the environment or secret files only (a file left in a volume is none).
        admin = settings.admin_key.get_secret_value() if settings.admin_key else (
            _read_key_file(settings.admin_key_file) if settings.environment != "production" else None)
        if admin:
            keys[digest(admin)] = Principal("admin", frozenset({ADMIN}))
        return cls(keys)

    def authenticate(self, key: str) -> Principal | None:
        # A dict lookup by digest: the secret itself is never compared byte by byte.
        return self._by_digest.get(digest(key))


def _read_key_file(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def ensure_local_admin_key(settings: ServiceSettings) -> tuple[Path, bool]:
    """For ``make run``: create ``<data_dir>/admin.key`` on first start (mode 0600)."""
    path = settings.admin_key_file
    if path.is_file():
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secrets.token_urlsafe(32) + "\n")
    path.chmod(0o600)
    return path, True


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


async def _principal(request: Request,
               credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("an API key is required: send Authorization: Bearer <key>",
                           headers={"WWW-Authenticate": "Bearer"})
    keyring: KeyRing = request.app.state.keyring
    principal = keyring.authenticate(credentials.credentials)
    if principal is None:
        raise Unauthorized("unknown API key", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    request.state.principal = principal
    return principal


def require(scope: str):
    """A dependency that returns the caller, if it holds ``scope`` (401 / 403 otherwise)."""

    async def _check(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not principal.allows(scope):
            raise Forbidden(f"this key lacks the scope {scope!r}", required_scope=scope)
        return principal

    return Security(_check, scopes=[scope])


PrincipalDep = Annotated[Principal, Depends(_principal)]
