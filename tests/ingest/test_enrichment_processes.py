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


def test_warm_up_starts_every_worker_process_with_its_enricher_before_the_first_batch():
    # a pool starts its processes at its first batch, and each then loads the models: the
    # first requests after a start waited ~1 s for that (care bench: p50 0.9-1.3 s in the
    # first 2 s, 0.1-0.3 s after)
    settings = IngestSettings(brands=[{"name": "Acme", "handles": ["@acme"]}], ingest_enrichment_processes=2)
    try:
        enrich.warm_up(settings)
        pooled = enrich.enricher_for(settings)
        processes = list(pooled.pool._processes.values())
        assert len(processes) == 2 and all(p.is_alive() for p in processes)
        assert all(pooled.pool.map(enrich._ready, range(4)))  # each has its enricher loaded
    finally:
        enrich.close_all()
