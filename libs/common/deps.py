"""FastAPI dependency aliases, declared once for every service."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from socialzone_common.auth import Principal, PrincipalDep, require  # noqa: F401  (re-exported)
from socialzone_common.service import ServiceRuntime
from socialzone_common.settings import ServiceSettings


def get_runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.runtime.sessions() as session:
        yield session


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.runtime.settings


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
