"""Enrichment in worker processes gives the same enrichment as in the request's thread, in
order, and the workers stop with the service."""

from __future__ import annotations

from socialzone_ingest import enrich
from socialzone_ingest.settings import IngestSettings

TEXTS = [(f"@acme order {n} never arrived #late" if n % 2 else f"love the new skates, thanks @acme {n}", None)
         for n in range(80)]


def test_worker_processes_enrich_a_batch_exactly_like_the_local_enricher():
    settings = IngestSettings(brands=[{"name": "Acme", "handles": ["@acme"]}], ingest_enrichment_processes=1)
    pooled = enrich.enricher_for(settings)
    local = enrich.enricher_for(settings.model_copy(update={"ingest_enrichment_processes": 0}))
    try:
        assert isinstance(pooled, enrich._PooledEnricher)
        assert enrich.enrich_many(pooled, TEXTS) == enrich.enrich_many(local, TEXTS)
    finally:
        enrich.close_all()
    assert pooled.pool._shutdown_thread  # stopped
