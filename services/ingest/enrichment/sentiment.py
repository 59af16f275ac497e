"""Sentiment of English social text: a linear model over words, VADER's lexicon and
customer-service cues, trained offline (``training/train_sentiment.py``) and run here in
plain Python from JSON weights.

Features of one text (the same function builds them for training and inference):

* sparse: lower-cased unigrams and bigrams (URLs, @handles and numbers folded to
  placeholders, a hashtag counts as the tag and as its word, words after a negation
  get a ``neg_`` prefix until the next punctuation), emoji, emoticons, ``!``/``?`` runs;
* cue tokens (``__cue_*``) for customer-service patterns that a bag of words misses:
  waiting times ("3 hours on hold"), things that never arrived, "still", "again / third
  time", thanks or praise in a complaint context (sarcasm: "great job, 2 hours on hold");
* dense: VADER's lexicon valence summed with VADER's negation and booster rules
  (positive mass, negative mass, the normalized compound), counted once per text.

The model is a multinomial logistic regression (positive / neutral / negative); the score
is P(positive) - P(negative), in [-1, 1].
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from vaderSentiment import vaderSentiment as _vader

from socialzone_ingest.enrichment.text import WordStartPattern, tokens

LABELS = ("negative", "neutral", "positive")
MODEL_FILE = "sentiment_model.json"

_NEGATIONS = frozenset(w.replace("'", "") for w in _vader.NEGATE) | frozenset(
    {"not", "no", "never", "nothing", "nobody", "none", "nor", "cannot", "without", "neither"})
_BOOSTERS = _vader.BOOSTER_DICT
_SCOPE_BREAK = frozenset(".,;:!?") | {"but", "however"}
_NUM_RE = re.compile(r"^\d+(?:[.,]\d+)?(?:st|nd|rd|th|am|pm|h|hr|hrs|k|m|min|mins)?$")

# --- customer-service cues ----------------------------------------------------------------
_TIME_UNIT = r"(?:hours?|hrs?|h|mins?|minutes?|days?|weeks?|months?)"
_QTY = r"(?:\d+(?:\.\d+)?\+?|an?|one|two|three|four|five|six|seven|eight|nine|ten|twelve|several|many|multiple|few|couple(?: of)?)"
_WAIT_CONTEXT = (r"(?:on hold|hold|wait\w*|delay\w*|late|stuck|sitting|sat|stranded|queue\w*|"
                 r"no (?:response|reply|answer|update|word)|nothing|still|tarmac|in line|ago|now)")
# text.WordStartPattern: regrouped by their leading characters and tried at word starts only
# (each is ``\b(?:...)``): the same texts match, far fewer tries
CUES: tuple[tuple[str, WordStartPattern], ...] = (
    ("wait", WordStartPattern(
        rf"{_QTY}\s*{_TIME_UNIT}\b[^.!?]{{0,40}}?\b{_WAIT_CONTEXT}"
        rf"|(?:on hold|waited|waiting|wait|delayed|stuck|sat|sitting|stranded)\b[^.!?]{{0,25}}?\b(?:for|over|about|almost|nearly)?\s*{_QTY}\s*{_TIME_UNIT}\b",
        )),
    ("never_arrived", WordStartPattern(
        r"(?:never|still (?:has ?n[o']t|have ?n[o']t|not|no|hasnt|havent|waiting)|has ?n[o']t|have ?n[o']t|hasnt|havent|didn'?t|did not|not yet|yet to|"
        r"(?:was|were|is|are|has been|have been) not|wasn'?t|weren'?t|isn'?t|aren'?t)\b"
        r"[^.!?]{0,25}?\b(?:arriv|receiv|deliver|show|turn|respon|repl|call|refund|get|got|hear|heard|come|came|ship|fix|resolv|process)",
        )),
    ("still", WordStartPattern(r"still\b")),
    ("again", WordStartPattern(
        r"again|yet another|another (?:delay|cancel\w*|issue|problem|outage)|(?:second|third|fourth|fifth|\d+(?:st|nd|rd|th)) time|every (?:single )?time|keeps? (?:\w+ing)|for the \w+ time",
        r"\b")),
    ("problem", WordStartPattern(
        r"cancel+ed|cancel+ation|delay(?:ed|s)?|lost|missing|broken|broke|damaged|refund|stuck|rude|missed|stranded|"
        r"overbooked|overcharged|charged twice|double charged|outage|down again|not working|doesn'?t work|won'?t work|crash\w*|"
        r"worst|terrible|horrible|awful|useless|ridiculous|unacceptable|disappoint\w*|frustrat\w*|no one|nobody|"
        r"hung up|on hold|never again|waste|scam|fail\w*|error|bug|glitch|late|wrong",
        r"\b")),
    ("praise_word", WordStartPattern(
        r"great|thanks?|thank you|thx|ty|love|loved|awesome|nice|wonderful|fantastic|brilliant|perfect|amazing|"
        r"good job|well done|way to go|kudos|bravo|impressive|appreciate\w*|excellent|superb|stellar",
        r"\b")),
)
# substrings one of which any match contains (skips the regex on most texts); None: always run
_CUE_GATES: dict[str, tuple[str, ...] | None] = {
    "wait": ("hour", "hr", "min", "day", "week", "month"),
    "never_arrived": ("never", "still", "n't", "nt", "not", "yet"),
    "still": ("still",),
    "again": ("again", "another", "time", "keep"),
    "problem": None,
    "praise_word": None,
}
_CUE_PATTERNS = tuple((f"__cue_{name}__", pattern, _CUE_GATES[name]) for name, pattern in CUES)
_CUE_WAIT = dict(CUES)["wait"]
_N_SCALAR = _vader.N_SCALAR
_SARCASM_HINT = WordStartPattern(
    r"not|thanks for nothing|so much for|yeah right|sure|as usual|of course|"
    r"how (?:nice|great|lovely)|just great|just perfect|love (?:it )?when|"
    r"love (?:how|that|waiting|being|sitting|spending)|great job|good job|well done|"
    r"way to go|nice job|kudos", r"\b")


@lru_cache(maxsize=1)
def _lexicon() -> dict[str, float]:
    """VADER's word valences, plus emoji scored by the words of their VADER descriptions."""
    folder = Path(_vader.__file__).parent
    lexicon: dict[str, float] = {}
    with open(folder / "vader_lexicon.txt", encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2:
                lexicon[parts[0].lower()] = float(parts[1])
    with open(folder / "emoji_utf8_lexicon.txt", encoding="utf-8") as fh:
        for line in fh:
            emoji, _, description = line.rstrip("\n").partition("\t")
            if emoji and emoji not in lexicon:
                total = sum(lexicon.get(w, 0.0) for w in description.lower().split())
                if total:
                    lexicon[emoji] = max(-3.0, min(3.0, total))
    return lexicon


_CACHE_LIMIT = 200_000
_token_cache: dict[str, tuple] = {}
"""Raw token -> what featurize needs of it; bounded (cleared when full), safe to share."""
_DIGIT_H_RE = re.compile(r"\d\s*h\b")


def _token_info(raw: str) -> tuple:
    """(feature token or None for a scope break, extra hashtag feature, resets negation,
    valence, booster, negates, shouted)"""
    lexicon = _lexicon()
    first = raw[0]
    extra = None
    resets = False
    shouted = False
    if (first == "h" and raw.startswith("http")) or (first == "w" and raw.startswith("www.")):
        token = "__url__"
    elif first == "@":
        token = "__mention__"
    elif first == "#":
        extra = raw.lower()
        token = extra[1:]
    elif first in "!?":
        token = raw[:2]
        resets = True
    else:
        shouted = raw.isupper() and len(raw) > 2
        token = raw.lower().replace("’", "'")
        if first.isdigit() and _NUM_RE.match(token):
            token = "__num__"
    if token in _SCOPE_BREAK:
        return (None, extra, True, token, 0.0, False, shouted)
    negates = token in _NEGATIONS or token.endswith("n't")
    return (token, extra, resets, lexicon.get(token), _BOOSTERS.get(token, 0.0), negates, shouted)


def featurize(text: str) -> tuple[list[str], tuple[float, float, float]]:
    """The sparse feature names and the dense lexicon features of ``text``."""
    cache = _token_cache
    feats: list[str] = []
    append = feats.append
    previous = "<s>"
    negated = 0
    pos = neg = 0.0
    boost = 0.0
    upper_words = 0
    for raw in tokens(text):
        info = cache.get(raw)
        if info is None:
            info = _token_info(raw)
            if len(raw) <= 40:          # bounded: at most 200k short tokens
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[raw] = info
        token, extra, resets, valence, booster, negates, shouted = info
        if extra is not None:
            append(extra)
        if resets:
            negated = 0
        if shouted:
            upper_words += 1
        if token is None:
            previous = valence  # a scope break: its text rides in the valence slot
            continue
        name = ("neg_" + token) if negated else token
        append(name)
        append(previous + " " + name)
        previous = name
        if valence is not None:
            if boost:
                valence += math.copysign(boost, valence)
            if negated:
                valence *= _N_SCALAR
            if valence > 0:
                pos += valence
            else:
                neg -= valence
        boost = booster
        if negates:
            negated = 3
        elif negated:
            negated -= 1
    feats.extend(_cue_names(text.lower(), upper_words))
    total = pos - neg
    compound = total / math.sqrt(total * total + 15.0)
    return feats, (pos / 4.0, neg / 4.0, compound)


def _cue_names(lowered: str, upper_words: int) -> list[str]:
    """The cue tokens of a lower-cased text, in feature order."""
    names: list[str] = []
    for name, pattern, gate in _CUE_PATTERNS:
        if (gate is None or any(g in lowered for g in gate)) and pattern.found(lowered):
            names.append(name)
    if "__cue_wait__" not in names and _DIGIT_H_RE.search(lowered) and _CUE_WAIT.found(lowered):
        names.append("__cue_wait__")
    if "__cue_praise_word__" in names and (
            "__cue_wait__" in names or "__cue_never_arrived__" in names or "__cue_problem__" in names
            or "__cue_again__" in names):
        names.append("__cue_praise_in_complaint__")
        if _SARCASM_HINT.found(lowered):
            names.append("__cue_sarcasm__")
    if upper_words >= 2:
        names.append("__cue_shouting__")
    return names


class SentimentModel:
    """Inference over the exported weights: no numpy or scikit-learn needed at run time."""

    __slots__ = ("_weights", "_dense", "_bias", "meta", "_token_weights")

    def __init__(self, payload: dict) -> None:
        if tuple(payload["labels"]) != LABELS:
            raise ValueError(f"unexpected labels {payload['labels']}")
        self._weights: dict[str, tuple[float, float, float]] = {
            name: (w[0], w[1], w[2]) for name, w in payload["weights"].items()}
        self._dense: tuple[tuple[float, float, float], ...] = tuple(
            (w[0], w[1], w[2]) for w in payload["dense"])
        self._bias: tuple[float, float, float] = tuple(payload["bias"])  # type: ignore[assignment]
        self.meta: dict = payload.get("meta", {})
        self._token_weights: dict[str, tuple] = {}
        """Raw token -> ``_token_info`` plus the weights of its features (bounded like _token_cache)."""

    @classmethod
    def load(cls, path: str | Path | None = None) -> "SentimentModel":
        if path is None:
            raw = resources.files("socialzone_ingest.enrichment").joinpath("data", MODEL_FILE).read_text("utf-8")
        else:
            raw = Path(path).read_text("utf-8")
        return cls(json.loads(raw))

    def vocabulary(self):
        """The feature names that carry weight (words, bigrams, cue tokens)."""
        return self._weights.keys()

    def _weighted_info(self, raw: str) -> tuple:
        """``_token_info(raw)`` and the weights (or None) of the features it yields: the hashtag
        feature, the token, and the token negated."""
        token, extra, resets, valence, booster, negates, shouted = _token_info(raw)
        weights = self._weights
        return (token, resets, valence, booster, negates, shouted,
                None if extra is None else weights.get(extra),
                None if token is None else weights.get(token),
                None if token is None else "neg_" + token,
                None if token is None else weights.get("neg_" + token))

    def predict(self, text: str) -> tuple[str, float]:
        """(label, score) with score = P(positive) - P(negative).

        ``featurize`` and ``predict_features`` in one pass: the weights are added as the
        features are found, in the same order (so the sums are bit for bit the same), and a
        token's own weights come from a per-token cache instead of a lookup per feature.
        """
        weights = self._weights
        cache = self._token_weights
        s0, s1, s2 = self._bias
        previous = "<s>"
        negated = 0
        pos = neg = 0.0
        boost = 0.0
        upper_words = 0
        for raw in tokens(text):
            info = cache.get(raw)
            if info is None:
                info = self._weighted_info(raw)
                if len(raw) <= 40:          # bounded: at most 200k short tokens
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    cache[raw] = info
            token, resets, valence, booster, negates, shouted, w_extra, w_token, neg_name, w_neg = info
            if w_extra is not None:
                s0 += w_extra[0]
                s1 += w_extra[1]
                s2 += w_extra[2]
            if resets:
                negated = 0
            if shouted:
                upper_words += 1
            if token is None:
                previous = valence  # a scope break: its text rides in the valence slot
                continue
            if negated:
                name, w = neg_name, w_neg
            else:
                name, w = token, w_token
            if w is not None:
                s0 += w[0]
                s1 += w[1]
                s2 += w[2]
            w = weights.get(previous + " " + name)
            if w is not None:
                s0 += w[0]
                s1 += w[1]
                s2 += w[2]
            previous = name
            if valence is not None:
                if boost:
                    valence += math.copysign(boost, valence)
                if negated:
                    valence *= _N_SCALAR
                if valence > 0:
                    pos += valence
                else:
                    neg -= valence
            boost = booster
            if negates:
                negated = 3
            elif negated:
                negated -= 1
        for name in _cue_names(text.lower(), upper_words):
            w = weights.get(name)
            if w is not None:
                s0 += w[0]
                s1 += w[1]
                s2 += w[2]
        total = pos - neg
        return self._decide(s0, s1, s2, (pos / 4.0, neg / 4.0, total / math.sqrt(total * total + 15.0)))

    def predict_features(self, feats: list[str], dense: tuple[float, float, float]) -> tuple[str, float]:
        """(label, score) of features from ``featurize`` (the reference ``predict`` is held to)."""
        s0, s1, s2 = self._bias
        weights = self._weights
        for name in feats:
            w = weights.get(name)
            if w is not None:
                s0 += w[0]
                s1 += w[1]
                s2 += w[2]
        return self._decide(s0, s1, s2, dense)

    def _decide(self, s0: float, s1: float, s2: float, dense: tuple[float, float, float]) -> tuple[str, float]:
        for value, w in zip(dense, self._dense):
            if value:
                s0 += value * w[0]
                s1 += value * w[1]
                s2 += value * w[2]
        top = max(s0, s1, s2)
        e0, e1, e2 = math.exp(s0 - top), math.exp(s1 - top), math.exp(s2 - top)
        z = e0 + e1 + e2
        score = (e2 - e0) / z
        if s0 >= s1 and s0 >= s2:
            label = "negative"
        elif s2 > s1:
            label = "positive"
        else:
            label = "neutral"
        return label, max(-1.0, min(1.0, score))
