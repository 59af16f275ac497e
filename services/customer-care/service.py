"""Registers the customer care service with the platform (entry point ``socialzone.services``)."""

from __future__ import annotations

import asyncio
import logging
import weakref
from pathlib import Path

from socialzone_common.service import ServiceSpec
from socialzone_care.models import CareTable
from socialzone_care.settings import CareSettings

log = logging.getLogger(__name__)
_passes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def sla_clock_passes(runtime) -> int:
    """How many passes the runtime's SLA clock has completed (tests wait on it)."""
    return _passes.get(runtime, 0)


def _routers():
    from socialzone_care import api

    return [api.router]


def _consumers(runtime):
    from socialzone_care.consumers import consumer_specs

    return consumer_specs(runtime)


def run_sla_clock_once(runtime) -> dict[str, int]:
    """One pass of the SLA clock in its own transaction (the background task calls it)."""
    from socialzone_care import sla
    from socialzone_care.clock import clock_of

    with runtime.sessions() as session:
        counts = sla.tick(session, now=clock_of(runtime).now(), settings=runtime.settings)
        session.commit()
    return counts


async def sla_clock(runtime, stop: asyncio.Event) -> None:
    """Warnings, breaches, escalations and advocate fallbacks, every ``sla_tick_s``."""
    while not stop.is_set():
        counts = await asyncio.to_thread(run_sla_clock_once, runtime)
        _passes[runtime] = _passes.get(runtime, 0) + 1
        if counts.get("checked"):
            log.info("sla clock: %s", counts)
        if counts.get("checked", 0) >= 500:
            continue  # more are due: go on at once
        try:
            await asyncio.wait_for(stop.wait(), runtime.settings.sla_tick_s)
        except asyncio.TimeoutError:
            pass


SERVICE = ServiceSpec(
    name="care",
    title="Customer care",
    description="Cases, queues, routing, SLAs, responses and CSAT, seeing the whole customer.",
    migrations=Path(__file__).parent / "migrations",
    metadata=CareTable.metadata,
    settings_class=CareSettings,
    routers=_routers,
    consumers=_consumers,
    background=(sla_clock,),
)
