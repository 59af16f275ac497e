"""Hashtags, mentions, URLs and keywords."""

from socialzone_ingest.enrichment.text import find_hashtags, find_mentions, find_urls, keywords


def test_hashtags_are_found_once_each_in_order():
    assert find_hashtags("#fail again #Acme #fail, and #2024 is not a tag; C# neither") == ("#fail", "#Acme")


def test_hashtags_ignore_html_entities_and_url_fragments():
    assert find_hashtags("fish &#38; chips https://acme.com/page#section") == ()


def test_mentions_include_mastodon_handles_but_not_email_addresses():
    assert find_mentions("@acme and @Globex_UK, cc @bob@mastodon.social, mail me at jane@example.com") == (
        "@acme", "@Globex_UK", "@bob@mastodon.social")


def test_urls_lose_trailing_punctuation():
    text = "see https://acme.com/help?id=3. or (www.globex.com/x), https://t.co/abc!"
    assert find_urls(text) == ("https://acme.com/help?id=3", "www.globex.com/x", "https://t.co/abc")


def test_keywords_are_content_phrases_without_stopwords():
    assert keywords("my order never arrived and the refund is still missing")[:2] == (
        "order never arrived", "refund")


def test_keywords_leave_brand_words_to_the_brand_matcher(enricher):
    result = enricher.enrich("Acme corp lost my luggage in Denver")
    assert "acme" not in " ".join(result.keywords)
    assert "lost" in " ".join(result.keywords)


def test_enrichment_carries_the_extracted_entities(enricher):
    result = enricher.enrich("@acme 3 hours on hold #fail https://acme.com/status")
    assert result.mentions == ("@acme",)
    assert result.hashtags == ("#fail",)
    assert result.urls == ("https://acme.com/status",)
    assert result.keywords
