"""Tokenizing and the cheap extractors: hashtags, mentions, URLs and keywords.

Everything here is precompiled at import and allocation-light, because it runs on every
interaction the service records (tens of thousands per second).
"""

from __future__ import annotations

import re

URL_RE = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]}'\""
# @handle as X, Instagram and Mastodon write it (user@instance for Mastodon); not e-mail addresses.
MENTION_RE = re.compile(r"(?<![\w@/.])@([A-Za-z0-9_]{1,30}(?:@[A-Za-z0-9.-]+\.[A-Za-z]{2,})?)")
HASHTAG_RE = re.compile(r"(?<![\w&#/])#(\w*[^\W\d_]\w*)")

# One pass that the sentiment model, the intent rules and keywords share. Order matters:
# URLs, handles and hashtags first, then emoticons, words (with inner apostrophes), runs of
# ! and ?, and single emoji / symbols.
TOKEN_RE = re.compile(
    r"(?:https?://|www\.)\S+"
    r"|@\w+"
    r"|#\w+"
    r"|(?<!\w)(?:[:;=8][\-o\*']?[\)\]\(\[dDpP/\\|@3](?!\w)|<3)"
    r"|\w+(?:['’]\w+)*"
    r"|[!?]+"
    r"|[^\w\s]",
    re.UNICODE,
)

STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before
being below between both but by can can't cannot could couldn't did didn't do does doesn't doing
don't down during each few for from further had hadn't has hasn't have haven't having he he'd
he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in into
is isn't it it's its itself let's me more most mustn't my myself no nor not of off on once only
or other ought our ours ourselves out over own same shan't she she'd she'll she's should
shouldn't so some such than that that's the their theirs them themselves then there there's these
they they'd they'll they're they've this those through to too under until up very was wasn't we
we'd we'll we're we've were weren't what what's when when's where where's which while who who's
whom why why's with won't would wouldn't you you'd you'll you're you've your yours yourself
yourselves im ive dont cant wont didnt doesnt isnt wasnt arent u ur ya yes yeah ok okay just
also get got gets getting one two still even really much many any anyone every will would
thanks thank please pls plz hi hello hey lol omg rt via amp today now time day back like know
going go make made way need want let see say said thing things well us oh yet
""".split())



def find_urls(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.group(0).rstrip(_URL_TRAILING) for m in URL_RE.finditer(text)))


def find_mentions(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys("@" + m.group(1) for m in MENTION_RE.finditer(text)))


def find_hashtags(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys("#" + m.group(1) for m in HASHTAG_RE.finditer(text)))


def strip_entities(text: str) -> str:
    """The text without URLs and @handles (what language detection and keywords look at)."""
    return MENTION_RE.sub(" ", URL_RE.sub(" ", text))


_KW_TOKEN_RE = re.compile(r"[^\W\d_][\w'’-]*[^\W_]|[^\W\d_]|[.,;:!?()\[\]{}\"“”|/\\…–—#@&*+=<>]+|\s-\s", re.UNICODE)


def keywords(text: str, *, limit: int = 5, exclude: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """RAKE-like key phrases: runs of content words between stopwords and punctuation.

    A phrase (at most three words) scores the sum of its words' degree/frequency; single
    words need at least three letters. ``text`` should already be free of URLs and
    handles. Lower-cased; brand words (``exclude``) are left to the brand matcher.
    """
    phrases: list[tuple[str, ...]] = []
    current: list[str] = []
    for token in _KW_TOKEN_RE.findall(text.lower()):
        if token[0].isalpha():
            if "’" in token:
                token = token.replace("’", "'")
            if token not in STOPWORDS and token not in exclude and len(token) > 1:
                current.append(token)
                continue
        if current:
            phrases.append(tuple(current[:3]))
            current = []
    if current:
        phrases.append(tuple(current[:3]))
    if not phrases:
        return ()
    freq: dict[str, int] = {}
    degree: dict[str, int] = {}
    for phrase in phrases:
        n = len(phrase)
        for word in phrase:
            freq[word] = freq.get(word, 0) + 1
            degree[word] = degree.get(word, 0) + n
    scored: dict[str, float] = {}
    for phrase in phrases:
        if len(phrase) == 1 and len(phrase[0]) < 3:
            continue
        key = " ".join(phrase)
        if key not in scored:
            scored[key] = sum(degree[w] / freq[w] for w in phrase)
    return tuple(sorted(scored, key=scored.__getitem__, reverse=True)[:limit])
