"""The Enricher: everything ingest derives from the text of one interaction."""

from __future__ import annotations

import orjson

from socialzone_common.events.common import Enrichment, Sentiment

from socialzone_ingest.enrichment.brands import BrandList, BrandMatcher
from socialzone_ingest.enrichment.intents import detect_intents
from socialzone_ingest.enrichment.language import LanguageDetector, normalize_tag
from socialzone_ingest.enrichment.sentiment import SentimentModel, _lexicon
from socialzone_ingest.enrichment.text import (
    STOPWORDS,
    URL_RE,
    find_hashtags,
    find_mentions,
    find_urls,
    keywords,
    strip_entities,
)

MAX_CHARS = 10_000
"""Longer texts are enriched on their first 10,000 characters (what the event carries)."""
SENTIMENT_LANGUAGES = frozenset({"en"})
"""Languages the sentiment model handles; others get ``unknown``."""
_UNKNOWN = Sentiment(label="unknown", score=None)
_UNKNOWN_JSON = {"label": "unknown", "score": None}
_EMPTY_JSON = Enrichment().model_dump(mode="json")
_MAX_ENTITIES = 50


class Enricher:
    """Loads its models once; ``enrich`` is thread-safe and allocation-light.

    ``Enricher(brands=BrandList(...))``; ``enricher.enrich(text, declared_language=None)``.
    """

    def __init__(self, brands: BrandList | None = None, *, sentiment_model: SentimentModel | None = None,
                 warm_up: bool = True) -> None:
        self.brands = brands or BrandList()
        self.sentiment_model = sentiment_model or SentimentModel.load()
        self.language = LanguageDetector()
        # ordinary words (never fuzzy-matched to a brand): the model's vocabulary and VADER's lexicon
        known = frozenset(name for name in self.sentiment_model.vocabulary() if name.isalpha())
        self.matcher = BrandMatcher(self.brands, known_words=known | STOPWORDS | frozenset(_lexicon()))
        self._keyword_exclude = frozenset(
            word for entry in self.brands.entries
            for phrase in (entry.name, *entry.aliases, *entry.products) for word in phrase.lower().split())
        if warm_up:
            self.language.warm_up()

    def enrich(self, text: str | None, declared_language: str | None = None) -> Enrichment:
        derived = self._derive(text, declared_language)
        if derived is None:
            return Enrichment(language=normalize_tag(declared_language))
        language, label, score, intents, hashtags, mentions, urls, keywords_, brands = derived
        sentiment = _UNKNOWN if label is None else Sentiment.model_construct(label=label, score=score)
        # every value is built here with the declared types: skip re-validation (hot path)
        return Enrichment.model_construct(language=language, sentiment=sentiment, intents=intents,
                                          hashtags=hashtags, mentions=mentions, urls=urls, keywords=keywords_,
                                          brands=brands)

    def enrich_json(self, text: str | None, declared_language: str | None = None) -> bytes:
        """``enrich(...).model_dump_json()``, byte for byte, without building the models."""
        derived = self._derive(text, declared_language)
        if derived is None:
            return orjson.dumps({**_EMPTY_JSON, "language": normalize_tag(declared_language)})
        language, label, score, intents, hashtags, mentions, urls, keywords_, brands = derived
        return orjson.dumps({
            "language": language,
            "sentiment": _UNKNOWN_JSON if label is None else {"label": label, "score": score},
            "intents": intents, "hashtags": hashtags, "mentions": mentions, "urls": urls, "keywords": keywords_,
            "brands": [{"name": b.name, "kind": b.kind, "matched": b.matched} for b in brands],
        })

    def enrich_many_json(self, texts: list[tuple[str | None, str | None]]) -> list[bytes]:
        """``enrich_json`` of each ``(text, declared language)``, in order."""
        enrich_json = self.enrich_json
        return [enrich_json(text, language) for text, language in texts]

    def _derive(self, text: str | None, declared_language: str | None) -> tuple | None:
        """(language, sentiment label or None for unknown, score, intents, hashtags, mentions, urls,
        keywords, brands), or None for no text."""
        if not text or text.isspace():
            return None
        if len(text) > MAX_CHARS:
            text = text[:MAX_CHARS]
        # cheap substring tests skip the scans that cannot match (most posts have no URL)
        hashtags = find_hashtags(text)[:_MAX_ENTITIES] if "#" in text else ()
        mentions = find_mentions(text)[:_MAX_ENTITIES] if "@" in text else ()
        has_url = "http" in text or "www." in text or "HTTP" in text or "WWW." in text
        urls = find_urls(text)[:_MAX_ENTITIES] if has_url else ()
        bare = strip_entities(text) if (mentions or has_url) else text
        language = self.language.detect(bare, declared_language)
        primary = language.split("-", 1)[0] if language else None

        label: str | None = None
        score: float | None = None
        if primary in SENTIMENT_LANGUAGES or (primary is None and not _has_letters(bare)):
            label, score = self.sentiment_model.predict(text)

        brands = self.matcher.find(URL_RE.sub(" ", text) if urls else text)
        intents = detect_intents(text, sentiment_label=label, sentiment_score=score,
                                 addressed=bool(mentions or brands)) if label is not None else ()
        return (language, label, None if score is None else round(score, 4), intents, hashtags, mentions, urls,
                keywords(bare, exclude=self._keyword_exclude), brands)


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)
