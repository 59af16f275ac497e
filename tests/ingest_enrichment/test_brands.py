"""Brand and competitor mentions from the configured brand list."""

import pytest

from socialzone_ingest.enrichment import BrandEntry, BrandList, Enricher


def brands_of(enricher, text):
    return {(b.name, b.kind, b.matched) for b in enricher.enrich(text).brands}


@pytest.mark.parametrize("text, matched", [
    ("I love Acme", "Acme"),
    ("ACME support is down", "ACME"),
    ("acme corp lost my parcel", "acme corp"),
    ("Acme   Corp lost my parcel", "Acme   Corp"),
    ("@acme where is my order", "@acme"),
    ("@ACME where is my order", "@ACME"),
    ("so annoyed #acme #fail", "#acme"),
    ("my new roadrunner 3000 is great", "roadrunner 3000"),
    ("#RoadRunner3000 unboxing", "#RoadRunner3000"),
])
def test_brand_is_matched_by_name_alias_handle_hashtag_and_product(enricher, text, matched):
    assert brands_of(enricher, text) == {("Acme", "brand", matched)}


def test_competitor_mentions_carry_the_competitor_kind(enricher):
    assert brands_of(enricher, "switching to @globex, Globex is cheaper") == {("Globex", "competitor", "@globex")}


def test_light_misspellings_of_long_names_match(enricher):
    assert brands_of(enricher, "thinking of moving to globx") == {("Globex", "competitor", "globx")}
    assert brands_of(enricher, "Glboex is cheaper") == {("Globex", "competitor", "Glboex")}
    assert brands_of(enricher, "Globexx has a deal") == {("Globex", "competitor", "Globexx")}


def test_short_names_are_not_fuzzy_matched(enricher):
    assert brands_of(enricher, "acne cream review") == set()


@pytest.mark.parametrize("text", [
    "acmeeats delivered cold food",
    "@acmebank blocked my card",
    "the globe is round",
    "Pacme and acmes",
    "mail me at support@acme",
    "https://acme.example.com/page",
])
def test_no_false_match_inside_other_words_handles_or_ordinary_words(enricher, text):
    assert brands_of(enricher, text) == set()


def test_both_brands_in_one_post(enricher):
    assert {b[0] for b in brands_of(enricher, "Acme or Globex? @globex has the better deal")} == {"Acme", "Globex"}


def test_enricher_without_brands_finds_none(bare_enricher):
    assert bare_enricher.enrich("@acme my order never arrived").brands == ()


def test_brand_entries_are_pydantic_models_read_from_settings_json():
    entries = BrandList.model_validate_json(
        '{"entries": [{"name": "Acme", "kind": "brand", "handles": ["acme"]}, {"name": "Globex", "kind": "competitor"}]}')
    assert entries.entries[0] == BrandEntry(name="Acme", kind="brand", handles=["acme"])
    enricher = Enricher(entries, warm_up=False)
    assert enricher.enrich("hi @Acme").brands[0].name == "Acme"
