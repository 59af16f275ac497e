"""Tokenizing and the cheap extractors: hashtags, mentions, URLs and keywords.

Everything here is precompiled at import and allocation-light, because it runs on every
interaction the service records (tens of thousands per second).
"""

from __future__ import annotations

import re

URL_RE = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]}'\""
# @handle as X, Instagram and Mastodon write it (user@instance for Mastodon); not e-mail addresses.
# The lookbehind (the character before the @ / #) comes after the @ / # it is about: a pattern
# that starts with a literal lets re jump from one @ to the next instead of trying every position.
MENTION_RE = re.compile(r"@(?<![\w@/.]@)([A-Za-z0-9_]{1,30}(?:@[A-Za-z0-9.-]+\.[A-Za-z]{2,})?)")
HASHTAG_RE = re.compile(r"#(?<![\w&#/]#)(\w*[^\W\d_]\w*)")

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

# TOKEN_RE behind the whitespace before its token, in one match: findall steps over a run of
# spaces at once instead of failing every alternative at each of them. Every other character
# starts a token, so the tokens are the same. Trailing whitespace is stripped first (each of its
# positions would otherwise scan to the end of the text: quadratic).
_TOKEN_AFTER_SPACE_RE = re.compile(r"\s*+(" + TOKEN_RE.pattern + ")")


def tokens(text: str) -> list[str]:
    """``TOKEN_RE.findall(text)``, faster."""
    return _TOKEN_AFTER_SPACE_RE.findall(text.rstrip())


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


def might_have_url(text: str) -> bool:
    """False if ``URL_RE`` cannot match: it needs ``://`` or ``www.`` in any case (only w and W
    match a ``w`` under IGNORECASE, and only they lower-case to it)."""
    return "://" in text or "www." in text.lower()


def strip_entities(text: str) -> str:
    """The text without URLs and @handles (what language detection and keywords look at)."""
    if might_have_url(text):
        text = URL_RE.sub(" ", text)
    return MENTION_RE.sub(" ", text) if "@" in text else text


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


# --- searching from word starts only ---------------------------------------------------------
# ``re.search(r"\b(?:...)")`` calls the matcher at every character of the text (~25 ns each) and
# tries the alternatives at every word boundary (the end of a word as well as its start). Most
# alternatives start with a word character, so a match can only begin just after a non-word
# character or at position 0: a pattern that *starts with* that non-word character lets re skip
# to the candidates with its fast character-set scan and test only real word starts.
# ``WordStartPattern`` does that, for callers that only ask *whether* there is a match.

# ASCII characters other than [0-9A-Za-z_]: \w's complement on an ASCII text (a bitmap for re)
_ASCII_NON_WORD = r"[\x00-/:-@\[-^`{-\x7f]"
# any character that is not \w: the class lets re skip ASCII word characters, the lookbehind
# drops non-ASCII word characters (é, 中)
_ANY_NON_WORD = r"[^0-9A-Za-z_](?<=\W)"
_WORD_ATOM = re.compile(r"\\[dw]|\[(?:[A-Za-z0-9_](?:-[A-Za-z0-9_])?)+\]")
_NON_WORD_CLASS = re.compile(r"\[[^\w\\\]\[^-]+\]")


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"          # re's \w on str patterns


def _non_word_starts(alternative: str) -> list[str] | None:
    """The characters (as pattern atoms) that ``alternative`` can start with, if it must start
    with one of a few literal non-word characters (``,x``, ``\\?x``, ``[.!]x``); else None."""
    atom = _leading_atom(alternative)
    if atom != _atom_end_atom(alternative):
        return None                                  # quantified: ``!+``, `` ?``
    if len(atom) == 1 and atom not in _SPECIAL and not _is_word_char(atom):
        return [atom]
    if len(atom) == 2 and atom[0] == "\\" and not atom[1].isalnum():
        return [atom]
    if _NON_WORD_CLASS.fullmatch(atom):
        return [re.escape(c) for c in dict.fromkeys(atom[1:-1])]
    return None


def _leading_lookbehinds(alternative: str) -> tuple[list[str], str]:
    """The lookbehinds ``(?<=...)`` / ``(?<!...)`` that ``alternative`` starts with, and the rest."""
    behind = []
    while alternative.startswith(("(?<=", "(?<!")):
        end = _atom_end(alternative, 0)
        behind.append(alternative[:end])
        alternative = alternative[end:]
    return behind, alternative


def _atom_end_atom(alternative: str) -> str:
    """The first atom of ``alternative`` without its quantifier."""
    return alternative[:_atom_end(alternative, 0)]


def _starts_with_word_char(alternative: str) -> bool:
    """Whether every match of ``alternative`` starts with a word character."""
    first = _leading_literal(alternative)
    if first is not None:
        return _is_word_char(first)
    atom = _leading_atom(alternative)
    base = _atom_end_atom(alternative)
    return atom[len(base):] in ("", "+", "+?") and _WORD_ATOM.fullmatch(base) is not None


def _split_by_first_char(alternation: str) -> tuple[list[str], list[str], list[tuple[str, str]], list[str]]:
    """The alternatives of ``\\b(?:alternation)`` by where a match can start: (at a word start,
    only at position 0, after a word character as (first character, rest), anywhere else)."""
    word: list[str] = []
    at_start: list[str] = []
    after_word: list[tuple[str, str]] = []
    other: list[str] = []
    pending = [x for a in split_alternatives(alternation) for x in _expand_leading_group(a)]
    while pending:
        alternative = pending.pop(0)
        while alternative.startswith("\\b"):        # already at a word boundary
            alternative = alternative[2:]
        if not alternative:
            other.append(alternative)
        elif alternative[0] == "^":
            at_start.append(alternative[1:])          # \b^x: x at position 0
        elif alternative[0] not in _SPECIAL and alternative[1:2] == "?" and alternative[2:3] not in ("?", "+"):
            pending[:0] = [alternative[0] + alternative[2:], *_expand_leading_group(alternative[2:])]  # optional char
        elif _starts_with_word_char(alternative):
            word.append(alternative)
        elif (starts := _non_word_starts(alternative)) is not None:
            rest = alternative[_atom_end(alternative, 0):]
            after_word += [(char, rest) for char in starts]
        else:
            other.append(alternative)
    return word, at_start, after_word, other


class WordStartPattern:
    """``re.compile(r"\\b(?:" + alternation + ")" + suffix)`` for callers that ask whether it
    matches: ``found(text)``. The same texts match (the alternatives are regrouped as in
    ``by_first_char``, and so must have no capturing groups), in about half the time.
    """

    __slots__ = ("pattern", "_at_start", "_after_ascii", "_after_any", "_other")

    def __init__(self, alternation: str, suffix: str = "") -> None:
        self.pattern = r"\b(?:" + alternation + ")" + suffix
        if re.compile(self.pattern).groups:
            raise ValueError("WordStartPattern: capturing groups would be duplicated")
        word, at_start, after_word, other = _split_by_first_char(alternation)
        self._at_start = self._after_ascii = self._after_any = self._other = None
        if word or at_start:     # a match starting with a word character at position 0
            self._at_start = re.compile(r"\b(?:" + _trie(word + at_start) + ")" + suffix).match
        # Everywhere else a match starts just after a non-word character: with a word character,
        # or (alternatives that start with a non-word character ``c``, where \b means a word
        # character before ``c``) with ``c`` itself. The scan below consumes ``c``, so those come
        # in as ``f(?<=\wcf)...``: behind their first character ``f``, as few candidates get
        # that far; where that character is not a literal they get a search of their own.
        after_non_word = list(word)
        after_word_searches = []
        for char, tail in after_word:
            behind, tail = _leading_lookbehinds(tail)
            for rest in _expand_leading_group(tail):
                first = _leading_literal(rest)
                if first is None:
                    after_word_searches.append(rf"{char}(?<=\w{char})" + "".join(behind) + rest)
                else:    # each lookbehind one character later: past ``first`` as well
                    first_ = re.escape(first)
                    checks = "".join(f"{b[:-1]}{first_})" for b in (rf"(?<=\w{char})", *behind))
                    after_non_word.append(first + checks + rest[1:])
        if after_non_word:
            body = "(?:" + _trie(after_non_word) + ")" + suffix
            self._after_ascii = re.compile(_ASCII_NON_WORD + body).search
            self._after_any = re.compile(_ANY_NON_WORD + body).search
        if after_word_searches or other:
            alternatives = after_word_searches + ([r"\b(?:" + _trie(other) + ")"] if other else [])
            self._other = re.compile("(?:" + "|".join(alternatives) + ")" + suffix).search

    def found(self, text: str) -> bool:
        if self._at_start is not None and self._at_start(text) is not None:
            return True
        if self._after_ascii is not None and (
                self._after_ascii if text.isascii() else self._after_any)(text) is not None:
            return True
        return self._other is not None and self._other(text) is not None
