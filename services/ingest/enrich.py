"""The one place the service reaches the enrichment package (``socialzone_ingest.enrichment``).

``enricher_for(settings)`` builds (once per brand list) the ``Enricher`` with the
configured brands. The package is imported here and nowhere else, so the rest of
the service does not depend on its internals.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Protocol

from socialzone_common.events.common import Enrichment

from socialzone_ingest.settings import BrandConfig, IngestSettings

log = logging.getLogger(__name__)


class SupportsEnrich(Protocol):
    def enrich(self, text: str | None, *, declared_language: str | None = None) -> Enrichment: ...


def enrich_many(enricher: SupportsEnrich, texts: list[tuple[str | None, str | None]]) -> list[Enrichment]:
    """The enrichment of each ``(text, declared language)``, in order (in worker processes
    when ``ingest_enrichment_processes`` is set)."""
    many = getattr(enricher, "enrich_many", None)
    if many is not None:
        return many(texts)
    return [enricher.enrich(text, declared_language=language) for text, language in texts]


def enrich_many_json(enricher: SupportsEnrich, texts: list[tuple[str | None, str | None]]) -> list[bytes]:
    """``enrich_many`` as JSON: each enrichment exactly as ``Enrichment.model_dump_json()`` writes
    it, which is what the recorded document embeds. The package's ``Enricher`` (and its worker
    processes) write it directly, without building the models; other enrichers go through them."""
    many = getattr(enricher, "enrich_many_json", None)
    if many is not None:
        return many(texts)
    return [enrichment.__pydantic_serializer__.to_json(enrichment) for enrichment in enrich_many(enricher, texts)]


_lock = threading.Lock()
_cache: dict[tuple, SupportsEnrich] = {}


def _brands_key(brands: list[BrandConfig]) -> tuple:
    return tuple((b.name, b.kind, tuple(b.aliases), tuple(b.handles), tuple(b.products)) for b in brands)


def enricher_for(settings: IngestSettings) -> SupportsEnrich:
    """The enricher for this brand list (built once; enrichers are reused across requests)."""
    brands = settings.brand_list()
    processes = settings.ingest_enrichment_processes
    key = (_brands_key(brands), processes)
    enricher = _cache.get(key)
    if enricher is None:
        with _lock:
            enricher = _cache.get(key)
            if enricher is None:
                enricher = _PooledEnricher(brands, processes) if processes else _build(brands)
                _cache[key] = enricher
    return enricher


def warm_up(settings: IngestSettings) -> None:
    """Build the enricher and start its worker processes now: a pool starts its processes
    at its first batch, and each then loads the models (about a second), which the first
    requests after a start would wait for."""
    enricher = enricher_for(settings)
    if isinstance(enricher, _PooledEnricher):
        enricher.start_processes()


def _build(brands: list[BrandConfig]) -> SupportsEnrich:
    from socialzone_ingest.enrichment import BrandEntry, BrandList, Enricher

    entries = [BrandEntry(name=b.name, kind=b.kind, aliases=list(b.aliases), handles=list(b.handles),
                          products=list(b.products)) for b in brands]
    return Enricher(BrandList(entries=entries))


def close_all() -> None:
    """Stop the enrichment worker processes (the service stops them when it stops)."""
    with _lock:
        enrichers = list(_cache.items())
        for key, enricher in enrichers:
            if isinstance(enricher, _PooledEnricher):
                enricher.close()
                del _cache[key]


# --- enrichment in worker processes ------------------------------------------------------------------

_worker_enricher: SupportsEnrich | None = None
# Below twice this a batch is enriched in the calling thread. Low: a text costs ~150 us of
# pure Python, sending it to a worker a few us; in the all-in-one process, where the
# interpreter lock is the limit, batches of 50 enriched here cost the main process 10% more
# per interaction than in the worker (care bench at 500/s: 2,380 vs 2,138 us).
_MIN_PER_PROCESS = 4


def _init_worker(brands: list[dict], parent: int) -> None:
    global _worker_enricher
    _worker_enricher = _build([BrandConfig.model_validate(b) for b in brands])
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="exit-with-parent", daemon=True).start()


def _exit_when_orphaned(parent: int, every_s: float = 1.0) -> None:
    """End this worker once the process that started it is gone. A pool's worker holds both
    ends of its task queue's pipe (the queue is pickled whole), so it never reads end-of-file
    there and would wait forever after a ``kill -9`` of the service."""
    while os.getppid() == parent:
        time.sleep(every_s)
    log.warning("enrichment worker %d: the service process %d is gone; exiting", os.getpid(), parent)
    os._exit(0)


def _ready(_: int) -> bool:
    return _worker_enricher is not None


def _enrich_chunk(texts: list[tuple[str | None, str | None]]) -> list[Enrichment]:
    assert _worker_enricher is not None
    return [_worker_enricher.enrich(text, declared_language=language) for text, language in texts]


def _enrich_chunk_json(texts: list[tuple[str | None, str | None]]) -> list[bytes]:
    # bytes travel back cheaply (a pickled pydantic model costs more than the JSON)
    assert _worker_enricher is not None
    return enrich_many_json(_worker_enricher, texts)


class _PooledEnricher:
    """Enriches batches in ``processes`` worker processes, so that enrichment (the costliest
    step, pure Python) uses more than one core; single texts and small batches stay local."""

    def __init__(self, brands: list[BrandConfig], processes: int) -> None:
        import atexit
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.local = _build(brands)
        self.processes = processes
        self.pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker, initargs=([b.model_dump() for b in brands], os.getpid()))
        atexit.register(self.close)

    def start_processes(self) -> None:
        # One task per process, submitted together: the pool starts a process for each task
        # that finds none idle, and each task returns once its process's initializer ran.
        if not all(self.pool.map(_ready, range(self.processes))):
            raise RuntimeError("an enrichment worker process started without its enricher")

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def enrich(self, text: str | None, *, declared_language: str | None = None) -> Enrichment:
        return self.local.enrich(text, declared_language=declared_language)

    def enrich_many(self, texts: list[tuple[str | None, str | None]]) -> list[Enrichment]:
        if len(texts) < _MIN_PER_PROCESS * 2:
            return [self.local.enrich(t, declared_language=lang) for t, lang in texts]
        size = -(-len(texts) // (self.processes * 2))
        chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
        return [e for chunk in self.pool.map(_enrich_chunk, chunks) for e in chunk]

    def enrich_many_json(self, texts: list[tuple[str | None, str | None]]) -> list[bytes]:
        if len(texts) < _MIN_PER_PROCESS * 2:
            return enrich_many_json(self.local, texts)
        size = -(-len(texts) // (self.processes * 2))
        chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
        return [e for chunk in self.pool.map(_enrich_chunk_json, chunks) for e in chunk]
