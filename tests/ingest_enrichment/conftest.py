import pytest

from socialzone_ingest.enrichment import BrandEntry, BrandList, Enricher

BRANDS = BrandList(entries=[
    BrandEntry(name="Acme", kind="brand", aliases=["acme corp"], handles=["@acme"], products=["RoadRunner 3000"]),
    BrandEntry(name="Globex", kind="competitor", aliases=[], handles=["@globex"], products=[]),
])


@pytest.fixture(scope="session")
def enricher() -> Enricher:
    return Enricher(brands=BRANDS)


@pytest.fixture(scope="session")
def bare_enricher(enricher: Enricher) -> Enricher:
    return Enricher(brands=BrandList(), sentiment_model=enricher.sentiment_model)
