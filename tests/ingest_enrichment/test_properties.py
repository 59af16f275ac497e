"""Whatever text arrives, enrichment returns a valid Enrichment and never raises."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socialzone_common.events.common import Enrichment

social_text = st.one_of(
    st.text(max_size=400),
    st.lists(st.sampled_from(["@acme", "#Acme", "acme corp", "RoadRunner 3000", "globx", "https://x.co/a?b=1",
                              "never arrived", "3 hours on hold", "great job", "?", "!!!", "😡", "👍", "é", "İ",
                              "ß", "日本語", "спасибо", "\n", "\u200b", "www.acme.com", "@globex@mastodon.social",
                              "cancel my subscription", "where can I buy", "#", "@", "'", "’"]),
             max_size=30).map(" ".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=social_text, declared=st.one_of(st.none(), st.sampled_from(["en", "en-US", "de", "pt_BR", "xx-invalid-!", ""])))
def test_enrich_never_raises_and_returns_a_valid_enrichment(enricher, text, declared):
    result = enricher.enrich(text, declared_language=declared)

    assert isinstance(result, Enrichment)
    again = Enrichment.model_validate(result.model_dump(mode="json"))
    assert again == result
    if result.sentiment is not None:
        if result.sentiment.label == "unknown":
            assert result.sentiment.score is None
        else:
            assert -1.0 <= result.sentiment.score <= 1.0
    assert all(m.startswith("@") for m in result.mentions)
    assert all(h.startswith("#") for h in result.hashtags)
    assert len(set(result.intents)) == len(result.intents)
    assert {b.kind for b in result.brands} <= {"brand", "competitor"}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_enrich_is_deterministic(enricher, text):
    assert enricher.enrich(text) == enricher.enrich(text)


def test_empty_and_missing_text_enrich_to_nothing(enricher):
    assert enricher.enrich(None) == Enrichment()
    assert enricher.enrich("   \n") == Enrichment()
    assert enricher.enrich("", declared_language="en_gb").language == "en-GB"


def test_very_long_text_is_enriched_on_its_first_ten_thousand_characters(enricher):
    result = enricher.enrich("@acme my order never arrived. " * 2000)
    assert result.sentiment.label == "negative"
    assert "complaint" in result.intents


def test_enricher_is_safe_to_share_between_threads(enricher):
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"@acme order {i} never arrived, 3 hours on hold #fail" for i in range(200)]
    expected = [enricher.enrich(t) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(enricher.enrich, texts)) == expected
