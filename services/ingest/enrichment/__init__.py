"""Enrichment of interaction text: language, sentiment, intents, hashtags, mentions, URLs,
keywords and brand mentions (see README.md).

    from socialzone_ingest.enrichment import Enricher, BrandList, BrandEntry
    enricher = Enricher(brands=BrandList(entries=[BrandEntry(name="Acme", kind="brand")]))
    enricher.enrich("@acme my order never arrived", declared_language=None)
"""

from socialzone_ingest.enrichment.brands import BrandEntry, BrandList
from socialzone_ingest.enrichment.enricher import Enricher

__all__ = ["BrandEntry", "BrandList", "Enricher"]
