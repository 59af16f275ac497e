"""Registers the identity service with the platform (entry point ``socialzone.services``)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from socialzone_common.service import ServiceRuntime, ServiceSpec
from socialzone_common.worker import ConsumerSpec
from socialzone_identity.models import IdentityTable
from socialzone_identity.settings import IdentitySettings

RESOLUTION_GROUP = "identity-resolution"
TIMELINE_GROUP = "identity-timeline"
log = logging.getLogger(__name__)


def _routers():
    from socialzone_identity import api

    return [api.router]


def resolution_context(runtime: ServiceRuntime):
    from socialzone_identity import resolution

    return resolution.Context.from_settings(runtime.settings)


def resolution_spec(runtime: ServiceRuntime, ctx=None) -> ConsumerSpec:
    """Attribution: each polled batch in one transaction (the batch resolver), falling
    back to one event per transaction when a batch fails (see ConsumerSpec.batch_handler)."""
    from socialzone_identity import consumers
    from socialzone_identity.fastpath import BatchResolver

    ctx = ctx or resolution_context(runtime)
    resolver = BatchResolver(ctx) if runtime.settings.resolution_batch else None
    return ConsumerSpec(group=RESOLUTION_GROUP, topics=["zone.interactions.raw"],
                        handler=consumers.resolution_handler(ctx), types=consumers.RAW_TYPES,
                        batch_handler=resolver and resolver.resolve, batch_prepare=resolver and resolver.prepare,
                        description="Resolves the author of each raw interaction to one customer")


def _consumers(runtime: ServiceRuntime) -> list[ConsumerSpec]:
    from socialzone_identity import consumers, timeline

    return [
        resolution_spec(runtime),
        ConsumerSpec(group=TIMELINE_GROUP, topics=["zone.care", "zone.marketing", "zone.sales"],
                     handler=consumers.on_department_event, types=timeline.PROJECTED_TYPES,
                     batch_handler=consumers.on_department_events,
                     description="Appends department events to the customer timeline"),
        ConsumerSpec(group="identity-privacy", topics=["zone.privacy"], handler=consumers.on_privacy_event,
                     description="Tracks each service's erasure completion"),
    ]


def matcher_share(runtime: ServiceRuntime) -> float:
    """The share of the time the matcher may work with a backlog: less while attribution
    has interactions waiting."""
    settings = runtime.settings
    attributing = any(w.spec.group == RESOLUTION_GROUP and w.state.last_batch > 0 for w in runtime.workers)
    share = settings.match_share_while_attributing if attributing else settings.match_busy_share
    return min(1.0, max(0.01, share))


async def match_suggestions(runtime: ServiceRuntime, stop: asyncio.Event) -> None:
    """Scores new and changed profiles with the match model (apart from attribution), a
    batch of ``match_batch`` profiles per pass. With a backlog it works at most
    ``matcher_share`` of the time: after a pass that took t seconds it sleeps
    t * (1 - share) / share, so attribution keeps the CPU and the database it needs."""
    import time

    from socialzone_identity.matcher import load_matcher, match_pending

    settings = runtime.settings
    if not settings.match_on_ingest:
        return
    matcher = await asyncio.to_thread(load_matcher)
    if matcher is None:
        return

    threshold = settings.suggestion_threshold()

    def one_pass() -> int:
        with runtime.sessions() as session:
            scored = match_pending(session, matcher, threshold=threshold, max_candidates=settings.match_max_candidates,
                                   limit=settings.match_batch, max_block=settings.match_max_block)
            session.commit()
            return scored

    while not stop.is_set():
        started = time.monotonic()
        try:
            scored = await asyncio.to_thread(one_pass)
        except Exception:  # e.g. SQLite busy under a write burst: try again later, never stop
            log.warning("match pass failed; retrying after %.1fs", settings.match_poll_s, exc_info=True)
            scored = 0
        share = matcher_share(runtime)
        pause = settings.match_poll_s if scored == 0 else (time.monotonic() - started) * (1 - share) / share
        try:
            await asyncio.wait_for(stop.wait(), max(pause, 0.001))
        except asyncio.TimeoutError:
            pass


SERVICE = ServiceSpec(
    name="identity",
    title="Identity",
    description="One customer across every network and the CRM, and the timeline every department works from.",
    migrations=Path(__file__).parent / "migrations",
    metadata=IdentityTable.metadata,
    settings_class=IdentitySettings,
    routers=_routers,
    consumers=_consumers,
    background=(match_suggestions,),
)
