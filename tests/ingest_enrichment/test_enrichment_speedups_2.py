"""Second round of speed-ups: each fast form must give what the plain regex gives."""

from __future__ import annotations

import random
import re

import pytest

from socialzone_ingest.enrichment import intents, sentiment
from socialzone_ingest.enrichment.text import (
    HASHTAG_RE,
    MENTION_RE,
    TOKEN_RE,
    URL_RE,
    WordStartPattern,
    strip_entities,
    tokens,
)

_SEPARATORS = [" ", "  ", ", ", ". ", "! ", "?", "\n", "’", "'", "-", "@", "#", "é", "中", "😍", "\u00a0", "_", "3", ""]


def _all_patterns() -> dict[str, WordStartPattern]:
    found = {f"cue {name}": pattern for name, pattern in sentiment.CUES}
    found["sarcasm hint"] = sentiment._SARCASM_HINT
    found.update({name: value for name, value in vars(intents).items() if isinstance(value, WordStartPattern)})
    return found


def _fragments(pattern: str) -> list[str]:
    """Words and short phrases from a pattern's text, to build texts that come close to matching."""
    plain = re.sub(r"\\[a-zA-Z]|\(\?[:!=<]*|[()|?*+\[\]{}^$\\]", " ", pattern)
    words = [w for w in plain.split() if w.isascii()]
    return words + [" ".join(words[i:i + 3]) for i in range(0, len(words), 2)]


@pytest.mark.parametrize("name", sorted(_all_patterns()))
def test_word_start_pattern_matches_what_the_regex_matches(name):
    pattern = _all_patterns()[name]
    regex = re.compile(pattern.pattern)
    fragments = _fragments(pattern.pattern) + ["2 hours", "3 days", "5 stars", "cancelled.", "x"]
    rng = random.Random(name)
    for _ in range(3000):
        parts = [rng.choice(fragments) + rng.choice(_SEPARATORS) for _ in range(rng.randint(1, 6))]
        text = rng.choice(["", "", "a", "x.", "’", "😍"]) + "".join(parts)
        assert pattern.found(text) == (regex.search(text) is not None), text


@pytest.mark.parametrize("alternation, suffix, hits, misses", [
    ("ab|cd", r"\b", ["ab", "x ab", "x,ab", "é ab!", "’cd", "😍cd"], ["xab", "éab", "abc", "_cd", "3cd"]),
    (", recommend", "$", ["great, recommend"], [", recommend", " , recommend", "great, recommended"]),
    ("^(?:done)[.!]|[.!] (?:done)[.!]", "", ["done.", "ok! done!"], [" done.", "ok ! done!", "ok. done"]),
    (" ?(?:deals?) on", "", ["deals on", "best deal on", " deal on"], ["ideal on", "_deal on"]),
    (" (?<=\\w )(?:weeks|days) for", "", ["3 weeks for", "two days for"], ["weeks for", ". weeks for"]),
    (r"\d+ hours|[12] stars?", "", ["3 hours", "a 1 star", "x,12 hours"], ["a3 hours", "3 star", "x1 stars"]),
    (r"\bsmh\b|(?<!if you )need", "", ["smh", "i need", "ok smh."], ["if you need", "smhh", "asmh"]),
])
def test_word_start_pattern_cases(alternation, suffix, hits, misses):
    pattern = WordStartPattern(alternation, suffix)
    regex = re.compile(pattern.pattern)
    for text in hits:
        assert pattern.found(text) and regex.search(text), text
    for text in misses:
        assert not pattern.found(text) and not regex.search(text), text


def test_word_start_pattern_refuses_capturing_groups():
    with pytest.raises(ValueError):
        WordStartPattern("(a|b)c")


@pytest.mark.parametrize("text", [
    "", " ", "a", "  a  ", "a" + " " * 3000, "hi :) <3 :-( ok", "x\u00a0\u3000y ", "\n\tword’s #tag @h http://x.y ",
    "!!?? ... 😍😍", "¿qué? ¡sí!", "8) 8)", "a:)b :)", "trailing\u2003",
])
def test_tokens_equal_token_re(text):
    assert tokens(text) == TOKEN_RE.findall(text)


_OLD_MENTION_RE = re.compile(r"(?<![\w@/.])@([A-Za-z0-9_]{1,30}(?:@[A-Za-z0-9.-]+\.[A-Za-z]{2,})?)")
_OLD_HASHTAG_RE = re.compile(r"(?<![\w&#/])#(\w*[^\W\d_]\w*)")


@pytest.mark.parametrize("text", [
    "@a", "x@a", ".@a", "/@a @b@c.de", "@@a", "e-mail me at a@b.co or @help_desk", "#tag", "&#x", "a#b", "##c",
    "#1 #1a /#x #é", "@acme #fail #fail @acme",
])
def test_entity_patterns_unchanged(text):
    assert [m.span() + m.groups() for m in MENTION_RE.finditer(text)] == \
        [m.span() + m.groups() for m in _OLD_MENTION_RE.finditer(text)]
    assert [m.span() + m.groups() for m in HASHTAG_RE.finditer(text)] == \
        [m.span() + m.groups() for m in _OLD_HASHTAG_RE.finditer(text)]


@pytest.mark.parametrize("text", [
    "see Http://x.y/z @a", "WwW.example.com now", "plain text", "@a @b", "httpſ://x.y", "a://b", "www.x @y",
])
def test_strip_entities_unchanged(text):
    assert strip_entities(text) == _OLD_MENTION_RE.sub(" ", URL_RE.sub(" ", text))
