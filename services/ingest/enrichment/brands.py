"""Brand and competitor mentions from a configured brand list.

A brand matches by its name, aliases and product names (case-insensitive, on word
boundaries, any whitespace between words), by its handles (whole handles only:
``@acme`` does not match ``@acmebank``), by a hashtag or handle that spells a name,
alias or product without spaces (``#acme``, ``#RoadRunner3000``), and by light
misspellings of names, aliases and products of at least five characters (one edit, two
from eight characters, transpositions count as one; same first letter; never a word the
sentiment model knows as an ordinary word, so "globe" does not match "Globex").
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from rapidfuzz.distance import OSA

from socialzone_common.events.common import BrandMention

_SQUASH_RE = re.compile(r"[\W_]+", re.UNICODE)
_FUZZY_TOKEN_RE = re.compile(r"(?<![@#\w])[^\W\d_][\w'’-]{3,}", re.UNICODE)
_TAG_RE = re.compile(r"(?<![\w&])[#@](\w+)", re.UNICODE)
_FUZZY_CACHE_LIMIT = 100_000


class BrandEntry(BaseModel):
    """One brand of ours or a competitor's, as the ingest settings configure it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    """The canonical name reported in mentions."""
    kind: Literal["brand", "competitor"] = "brand"
    aliases: list[str] = []
    """Other names people use ("acme corp")."""
    handles: list[str] = []
    """Social handles, with or without the leading @."""
    products: list[str] = []
    """Product names that count as a mention of the brand."""


class BrandList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: list[BrandEntry] = []


def _squash(value: str) -> str:
    return _SQUASH_RE.sub("", value.lower())


class BrandMatcher:
    """Compiled from a BrandList once; ``find`` is thread-safe (read-only state)."""

    def __init__(self, brands: BrandList, *, known_words: frozenset[str] = frozenset()) -> None:
        self._phrase_owner: dict[str, BrandEntry] = {}
        self._squashed_owner: dict[str, BrandEntry] = {}
        self._handle_owner: dict[str, BrandEntry] = {}
        fuzzy: dict[str, BrandEntry] = {}
        for entry in brands.entries:
            for phrase in (entry.name, *entry.aliases, *entry.products):
                words = phrase.lower().split()
                if not words:
                    continue
                self._phrase_owner.setdefault(" ".join(words), entry)
                squashed = _squash(phrase)
                if squashed:
                    self._squashed_owner.setdefault(squashed, entry)
                    if len(squashed) >= 5 and squashed.isalpha() or (len(words) == 1 and len(squashed) >= 5):
                        fuzzy.setdefault(squashed, entry)
            for handle in entry.handles:
                key = handle.strip().lstrip("@").lower()
                if key:
                    self._handle_owner.setdefault(key, entry)
        self._phrase_re = self._phrase_re_i = None
        if self._phrase_owner:
            alternatives = sorted(self._phrase_owner, key=len, reverse=True)
            body = "|".join(r"\s+".join(re.escape(w) for w in phrase.split()) for phrase in alternatives)
            self._phrase_re = re.compile(rf"(?<![\w@#])(?:{body})(?!\w)")
            self._phrase_re_i = re.compile(rf"(?<![\w@#])(?:{body})(?!\w)", re.IGNORECASE)
        self._fuzzy_terms = list(fuzzy)
        self._fuzzy_owner = fuzzy
        self._fuzzy_by_first: dict[str, list[tuple[str, int]]] = {}
        for term in fuzzy:
            self._fuzzy_by_first.setdefault(term[0], []).append((term, 2 if len(term) >= 8 else 1))
        self._known_words = known_words
        self._fuzzy_cache: dict[str, tuple[str, ...]] = {}
        """Word -> the terms it misspells: words repeat, a word's answer does not change (bounded)."""
        self.empty = not (self._phrase_owner or self._handle_owner)

    def find(self, text: str) -> tuple[BrandMention, ...]:
        if self.empty or not text:
            return ()
        found: dict[str, BrandMention] = {}

        def add(entry: BrandEntry, matched: str) -> None:
            if entry.name not in found:
                found[entry.name] = BrandMention(name=entry.name, kind=entry.kind, matched=matched)

        for m in (_TAG_RE.finditer(text) if ("#" in text or "@" in text) else ()):
            word = m.group(1).lower()
            entry = (self._handle_owner.get(word) if m.group(0)[0] == "@" else None) \
                or self._squashed_owner.get(_squash(word))
            if entry is not None:
                add(entry, m.group(0))
        if self._phrase_re is not None:
            # matching lower-cased text without IGNORECASE is several times faster; offsets
            # carry over unless lower() changed the length (a few Unicode letters do)
            lowered = text.lower()
            if len(lowered) == len(text):
                matches = ((m.start(), m.end()) for m in self._phrase_re.finditer(lowered))
            else:
                matches = ((m.start(), m.end()) for m in self._phrase_re_i.finditer(text))
            for start, end in matches:
                entry = self._phrase_owner.get(" ".join(text[start:end].lower().split()))
                if entry is not None:
                    add(entry, text[start:end])
        if self._fuzzy_terms and len(found) < len(self._fuzzy_owner):
            self._find_fuzzy(text, add)
        return tuple(found.values())

    def _find_fuzzy(self, text: str, add) -> None:
        cache = self._fuzzy_cache
        terms_of = self._fuzzy_terms_of
        owner = self._fuzzy_owner
        for m in _FUZZY_TOKEN_RE.finditer(text):
            token = m.group(0)
            low = token.lower()
            terms = cache.get(low)
            if terms is None:
                terms = terms_of(low)
                if len(cache) >= _FUZZY_CACHE_LIMIT:
                    cache.clear()
                cache[low] = terms
            for term in terms:
                add(owner[term], token)

    def _fuzzy_terms_of(self, low: str) -> tuple[str, ...]:
        """The brand terms a lower-cased word is a light misspelling of (usually none)."""
        terms = self._fuzzy_by_first.get(low[0])
        if terms is None or low in self._known_words or low in self._squashed_owner:
            return ()
        n = len(low)
        distance = OSA.distance
        return tuple(term for term, allowed in terms
                     if abs(len(term) - n) <= allowed and 0 < distance(low, term, score_cutoff=allowed) <= allowed)
