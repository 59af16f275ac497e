"""FastAPI dependency aliases, declared once for every service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from socialzone_common.auth import Principal, PrincipalDep, require  # noqa: F401  (re-exported)
from socialzone_common.service import ServiceRuntime
from socialzone_common.settings import ServiceSettings


# Plain attribute reads: ``async def`` so that FastAPI does not send them through the
# thread pool (each trip costs more than the read itself).
async def get_runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request, opened on the event loop: making one does no I/O, and a
    plain generator dependency would cost two trips through the thread pool per request
    (measured: most of a lookup's time under load). Sync endpoints then use it in their
    worker thread, one thread at a time. Closing may talk to the server (a rollback), so
    off SQLite it closes in a thread."""
    runtime = request.app.state.runtime
    session = runtime.sessions()
    try:
        yield session
    finally:
        if runtime.engine.dialect.name == "sqlite":
            session.close()
        else:
            await asyncio.to_thread(session.close)


async def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.runtime.settings


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]
SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
