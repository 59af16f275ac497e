"""Blocking keys: short strings two profiles share when they might be the same person.

Identity stores each profile's keys in an indexed table and scores only the profiles that
share at least one key with a new one. A key is ``<kind>:<16 hex digits>``: the kind stays
readable (for statistics and for capping big blocks), the value is hashed so that the key
table holds no readable personal data and has a fixed width.

Kinds (see README for the recall each one buys):

``nm``  soundexes of the given name and the surname, order-free (a swapped pair still
        meets); display-name-only profiles use the first and last words of the name
``pi``  postcode + the initials of given name and surname, order-free
``pn``  postcode + soundex of the given name or of the surname (one key each)
``cn``  soundex of the city + soundex of the given name or of the surname
``ar``  house number + soundex of the first street word + region
``ac``  soundex of the first street word + soundex of the city
        (street keys are made for each comma-separated part of the street line)
``db``  full birth date;   ``ys`` birth year + soundex of the surname
``h``   handle;  ``e`` e-mail;  ``p`` phone;  ``id`` national id;  ``av`` avatar URL
``fn``  the full name, order-free (two words or more): its block is everyone with that name,
        so its size is how common the name is (``MatchModel.name_frequency``); its
        members all share an ``nm`` key too, so it adds practically no candidates
"""

from __future__ import annotations

import hashlib

import jellyfish

from socialzone_identity.matching.features import Normalized


def _key(kind: str, value: str) -> str:
    return f"{kind}:{hashlib.blake2b(value.encode(), digest_size=8).hexdigest()}"


def _soundex(text: str) -> str:
    return jellyfish.soundex(text) if text else ""


def raw_keys(n: Normalized) -> set[tuple[str, str]]:
    """The keys before hashing, for tests and diagnostics."""
    keys: set[tuple[str, str]] = set()
    if n.structured:
        first, last = n.given, n.surname
    else:
        first, last = n.first_token, n.last_token
    if first and last:
        keys.add(("nm", "|".join(sorted((_soundex(first), _soundex(last))))))
    if n.name_key:
        keys.add(("fn", n.name_key))
    if n.birth_date is not None:
        keys.add(("db", n.birth_date.isoformat()))
        if last:
            keys.add(("ys", f"{n.birth_date.year}|{_soundex(last)}"))
    if first and last and n.postcode:
        keys.add(("pi", f"{n.postcode}|{''.join(sorted((first[0], last[0])))}"))
    names = {t for t in (first, last) if t}
    city = _soundex(n.city.replace(" ", ""))
    for token in names:
        if n.postcode:
            keys.add(("pn", f"{n.postcode}|{_soundex(token)}"))
        if city:
            keys.add(("cn", f"{city}|{_soundex(token)}"))
    for part in n.street_parts:  # "12 Stanley St, Miami": "stanley st" and "miami"
        street_word = _soundex(part.split()[0])
        if n.street_number and n.region:
            keys.add(("ar", f"{n.street_number}|{street_word}|{n.region}"))
        if city:
            keys.add(("ac", f"{street_word}|{city}"))
    keys.update(("h", h) for h in n.handles)
    keys.update(("e", e) for e in n.emails)
    keys.update(("p", p) for p in n.phones)
    if n.ssn:
        keys.add(("id", n.ssn))
    if n.avatar:
        keys.add(("av", n.avatar))
    return keys


def name_blocking_key(n: Normalized) -> str | None:
    """The ``fn`` key of the profile's name, or None if it has no name of two words."""
    return _key("fn", n.name_key) if n.name_key else None


def blocking_keys(n: Normalized) -> set[str]:
    return {_key(kind, value) for kind, value in raw_keys(n)}


def candidate_pairs(keys: list[set[str]], *, groups: list[int] | None = None,
                    max_block: int | None = None) -> set[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of records sharing a key: what identity's indexed
    lookup returns, done in memory (benchmark, training, tests). ``groups`` keeps only pairs
    across groups (link-only); ``max_block`` skips keys shared by more records than that."""
    index: dict[str, list[int]] = {}
    for i, record_keys in enumerate(keys):
        for key in record_keys:
            index.setdefault(key, []).append(i)
    pairs: set[tuple[int, int]] = set()
    for members in index.values():
        if len(members) < 2 or (max_block is not None and len(members) > max_block):
            continue
        for x, i in enumerate(members):
            for j in members[x + 1:]:
                if groups is None or groups[i] != groups[j]:
                    pairs.add((i, j) if i < j else (j, i))
    return pairs
