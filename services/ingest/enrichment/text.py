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


# --- regrouping big alternations ------------------------------------------------------------
# CPython's re has no fast path for ``\b(?:alt1|alt2|...)`` with hundreds of alternatives: at
# every word boundary it tries each alternative in turn. It does skip an alternative whose
# first op is a literal character after a single compare, though. ``by_first_char`` rewrites
# an alternation into the same alternatives nested by their leading characters (a trie), so
# a position costs a few dozen compares instead of hundreds. It is only used on patterns whose
# callers ask *whether* there is a match (reordering alternatives can change which match is
# found, never whether there is one: these patterns have no atomic groups or backreferences).

_QUANTIFIERS = frozenset("?*+{")
_SPECIAL = frozenset("\\[](){}.*+?^$|")


def _atom_end(pattern: str, i: int) -> int:
    """The index just past the atom at ``pattern[i]``: an escape, a class, a group or one char."""
    c = pattern[i]
    if c == "\\":
        return i + 2
    if c == "[":
        j = i + 1
        if pattern[j] == "^":
            j += 1
        if pattern[j] == "]":   # a leading ] is a member, not the end
            j += 1
        while pattern[j] != "]":
            j += 2 if pattern[j] == "\\" else 1
        return j + 1
    if c == "(":
        j = i + 1
        while pattern[j] != ")":
            j = _atom_end(pattern, j)
        return j + 1
    return i + 1


def split_alternatives(alternation: str) -> list[str]:
    """``alternation`` split at its top-level ``|`` (not inside groups or classes)."""
    out: list[str] = []
    start = i = 0
    while i < len(alternation):
        if alternation[i] == "|":
            out.append(alternation[start:i])
            start = i + 1
            i += 1
        else:
            i = _atom_end(alternation, i)
    out.append(alternation[start:])
    return out


def _expand_leading_group(alternative: str) -> list[str]:
    """``(?:a|b)c`` -> ``[ac, bc]`` and ``(?:a)?c`` -> ``[ac, c]`` (recursively), so that each
    alternative starts with its own first character; a lookbehind of plain text moves past the
    character that follows it (``(?<!x )ab`` -> ``a(?<!x a)b``, the same test one character
    later), so that it is only evaluated where that character matched. Anything else is left
    as it is."""
    if alternative.startswith(("(?<!", "(?<=")):
        end = _atom_end(alternative, 0)
        lookbehind, behind = alternative[:4], alternative[4:end - 1]
        if any(c in _SPECIAL for c in behind):
            return [alternative]
        out = []
        for rest in _expand_leading_group(alternative[end:]):
            first = _leading_literal(rest)
            if first is None:
                out.append(alternative[:end] + rest)
            else:
                out.append(first + lookbehind + behind + first + ")" + rest[1:])
        return out
    if not alternative.startswith("(?:"):
        return [alternative]
    end = _atom_end(alternative, 0)
    inner, rest = alternative[3:end - 1], alternative[end:]
    if rest[:1] == "?" and rest[1:2] not in ("?", "+"):      # an optional group
        rest = rest[1:]
        return [*(x for a in split_alternatives(inner) for x in _expand_leading_group(a + rest)),
                *_expand_leading_group(rest)]
    if rest[:1] in _QUANTIFIERS:
        return [alternative]
    return [x for a in split_alternatives(inner) for x in _expand_leading_group(a + rest)]


def _leading_atom(alternative: str) -> str:
    """The first atom of an alternative with its quantifier (``a``, ``\\d+``, ``[12]``, ``(?<!x)``)."""
    end = _atom_end(alternative, 0)
    if alternative[end:end + 1] == "{":
        end = alternative.index("}", end) + 1
    elif alternative[end:end + 1] in ("?", "*", "+"):
        end += 1
    if alternative[end:end + 1] in ("?", "+"):     # lazy or possessive
        end += 1
    return alternative[:end]


def _leading_literal(alternative: str) -> str | None:
    """The first character if the alternative must start with exactly that character."""
    if alternative and alternative[0] not in _SPECIAL and alternative[1:2] not in _QUANTIFIERS:
        return alternative[0]
    return None


def by_first_char(alternation: str) -> str:
    """The same alternation (no capturing groups) as a trie over leading literal characters.

    ``by_first_char("ab|ac|(?:x|y)z")`` is ``"a(?:b|c)|xz|yz"``. Alternatives that share
    another leading atom are grouped behind it too (``\\d+ days|\\d+th`` -> ``\\d+(?: days|th)``),
    after the literal branches, so a whole ``\\b(?:...)\\b`` pattern can be passed as it is.
    """
    if re.compile(alternation).groups:
        raise ValueError("by_first_char: capturing groups would be duplicated")
    return _trie(split_alternatives(alternation))


def _trie(alternatives: list[str]) -> str:
    expanded = dict.fromkeys(x for a in alternatives for x in _expand_leading_group(a))
    literal: dict[str, list[str]] = {}
    other: dict[str, list[str]] = {}
    for alternative in expanded:
        if not alternative:
            literal.setdefault("", []).append("")
            continue
        atom = _leading_atom(alternative)
        (literal if _leading_literal(alternative) else other).setdefault(atom, []).append(alternative[len(atom):])
    branches = [atom + (rests[0] if len(rests) == 1 else "(?:" + _trie(rests) + ")")
                for atom, rests in literal.items()]
    # behind any other atom (``\\b``, ``\\d+``) the rest is regrouped as well: ``\\b(?:a|b)``
    branches += [atom + "(?:" + _trie(rests) + ")" for atom, rests in other.items()]
    return "|".join(branches)
