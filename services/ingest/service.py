"""Registers the ingest service with the platform (entry point ``socialzone.services``)."""

from pathlib import Path

from socialzone_common.service import ServiceSpec

from socialzone_ingest.models import IngestTable
from socialzone_ingest.settings import IngestSettings


def _routers():
    from socialzone_ingest import api

    return [api.router]


def _webhooks():
    from socialzone_ingest import webhooks

    return [webhooks.router]


def _consumers(runtime):
    from socialzone_ingest.consumers import consumer_specs

    return consumer_specs(runtime)


def warm_up(runtime) -> None:
    """The enrichment models and worker processes, loaded before the service says it is ready."""
    from socialzone_ingest import enrich

    enrich.warm_up(runtime.settings)


async def enrichment(runtime, stop) -> None:
    """Stop the enrichment worker processes, if any, when the service stops."""
    import asyncio

    from socialzone_ingest import enrich

    await stop.wait()
    await asyncio.to_thread(enrich.close_all)


def _background():
    from socialzone_ingest.feeds import feed_poller
    from socialzone_ingest.pollers import mastodon_poller

    return (enrichment, feed_poller, mastodon_poller)



SERVICE = ServiceSpec(
    name="ingest",
    title="Ingest",
    description="Connectors for social networks, blogs and the CRM; de-duplication and enrichment. "
                "Publishes ingest.interaction.recorded.",
    migrations=Path(__file__).parent / "migrations",
    metadata=IngestTable.metadata,
    settings_class=IngestSettings,
    routers=_routers,
    consumers=_consumers,
    background=_background(),
    warm_up=warm_up,
    # Outside /v1: Meta and Mastodon sign their deliveries, they cannot send our bearer keys.
    webhooks=_webhooks,
)
