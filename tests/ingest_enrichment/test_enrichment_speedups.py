"""``text.by_first_char``: regrouping an alternation must never change whether it matches."""

import random
import re

import pytest

from socialzone_ingest.enrichment.text import by_first_char, split_alternatives

# alternations with the constructs the intent and cue patterns use: optional and nested groups,
# lookbehinds before groups, quantified atoms, classes holding | ( ] and escapes, anchors
TRICKY = [
    r"ab|ac|(?:x|y)z|a",
    r"\b(?:never (?:arrived|came)|(?:hasn'?t|has not) (?:\w+ )?(?:arrived|come)|still (?:no|not))(?!\w)",
    r"(?<!can anyone )(?<!can you )(?:highly recommend|would recommend|(?:i )?recommend (?:it|them|@?\w+ to))",
    r"(?<!you )(?<!u )cancel+(?:ing|ed)? my|(?:^|[.!] )(?:cancel+ed|unsubscribed)[.!]|cancel+ing (?:my|it)",
    r"sooo+ good|so good|so+|[12] stars?|\d+ (?:days?|weeks?) late|\d+(?:st|nd|th) time|x{2,3}y|x{2,3}z",
    r"[|)] bar|[]a] x|\(paren\)|a\|b|, recommend(?:ed)?[.!]?$|\bsmh\b|witchcraft(?!\.)|(?:|q)rr",
    r" (?<=\w )(?:weeks|days)\W+for an?|(?:want|need)(?: to| of)? (?:buy|get)\b|(?<!if you )need (?:one|it)",
]
FRAGMENTS = ["a", "b", "c", "x", "y", "z", "ab", "ac", "xz", "yz", "never", "arrived", "came", "hasn't", "hasnt",
             "has not", "still", "no", "not", "really", "can anyone", "can you", "highly", "recommend", "would",
             "i", "it", "them", "@acme", "to", "you", "u", "cancel", "cancelled", "canceled", "cancelling", "my",
             "unsubscribed", "so", "sooo", "soooo", "good", "1", "2", "3", "12", "stars", "star", "days", "day",
             "weeks", "late", "1st", "2nd", "time", "xx", "xxx", "xxxx", "|", ")", "]", "bar", "(paren)", "a|b",
             ",", ".", "!", "?", "smh", "witchcraft", "want", "need", "if you", "to", "of", "buy", "get", "one",
             "for", "an", "for a", "rr", "qrr", "can anyone highly recommend", "can you recommend it",
             "you cancel my", "u cancelled my", "if you need one", "if you need to buy", "3 weeks", "ed", "-", "\n", "  "]


def _random_texts(rng: random.Random, count: int) -> list[str]:
    texts = []
    for _ in range(count):
        parts = rng.choices(FRAGMENTS, k=rng.randrange(1, 8))
        texts.append("".join(p + rng.choice(["", " ", " ", ". ", "! "]) for p in parts).strip(rng.choice(["", " "])))
    return texts


@pytest.mark.parametrize("alternation", TRICKY)
def test_regrouped_matches_exactly_where_the_original_does(alternation):
    original, regrouped = re.compile(alternation), re.compile(by_first_char(alternation))
    texts = _random_texts(random.Random(alternation), 4000) + FRAGMENTS + split_alternatives(alternation)
    mismatches = [t for t in texts if bool(original.search(t)) != bool(regrouped.search(t))]
    assert not mismatches
    assert any(original.search(t) for t in texts) and not all(original.search(t) for t in texts)


def test_shape_of_the_regrouping():
    assert by_first_char("ab|ac|(?:x|y)z") == "a(?:b|c)|xz|yz"
    # a plain-text lookbehind moves past the first character, so it only runs where that matched
    assert by_first_char("(?<!u )(?:ab|cd)") == "a(?<!u a)b|c(?<!u c)d"
    # other shared leading atoms are factored out too
    assert by_first_char(r"\d+ days|\d+th") == r"\d+(?: days|th)"
    assert split_alternatives(r"a(?:b|c)|[|]|\||d") == ["a(?:b|c)", "[|]", r"\|", "d"]


def test_capturing_groups_are_refused():
    with pytest.raises(ValueError):
        by_first_char("(a|b)c")
