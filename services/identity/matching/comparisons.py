"""The comparisons: for each feature, the ordered comparison levels and the function that
puts a pair of profiles into one of them (or says the feature is missing on a side).

A level is the first one whose condition holds, so the order is the order of strength.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rapidfuzz.distance import OSA, JaroWinkler

from socialzone_identity.matching.features import Normalized

MISSING = -1
"""Returned when either side lacks the feature: the comparison adds no evidence."""

_jw = JaroWinkler.similarity
_osa = OSA.distance


@dataclass(frozen=True, slots=True)
class Comparison:
    name: str
    levels: tuple[str, ...]
    compare: Callable[[Normalized, Normalized], int]
    description: str


def _fuzzy(x: str, y: str, offset: int) -> int:
    """exact / JW >= 0.92 / JW >= 0.80 / else, as level indexes from ``offset``."""
    if x == y:
        return 0
    s = _jw(x, y)
    return offset if s >= 0.92 else offset + 1 if s >= 0.80 else offset + 2


def given_name(a: Normalized, b: Normalized) -> int:
    x, y = a.given, b.given
    if not x or not y:
        return MISSING
    if x == y:
        return 0
    if a.given_groups & b.given_groups:
        return 1  # nickname
    if x == b.surname or y == a.surname:
        return 2  # one side's given name is the other's surname (swapped or shifted)
    if (len(x) == 1 or len(y) == 1) and x[0] == y[0]:
        return 3  # an initial
    return _fuzzy(x, y, 4)


def surname(a: Normalized, b: Normalized) -> int:
    x, y = a.surname, b.surname
    if not x or not y:
        return MISSING
    if x == y:
        return 0
    if x == b.given and y == a.given:
        return 1  # swapped
    return _fuzzy(x, y, 2)


def full_name(a: Normalized, b: Normalized) -> int:
    """Only when one side has no given name or surname, just a display name: otherwise the
    name comparisons above already hold that evidence."""
    if a.structured and b.structured:
        return MISSING
    x, y = a.full, b.full
    if not x or not y:
        return MISSING
    if x == y:
        return 0
    xs, ys = " ".join(sorted(x.split())), " ".join(sorted(y.split()))
    if xs == ys:
        return 0
    return 1 + min(_fuzzy(x, y, 0), _fuzzy(xs, ys, 0))


def birth_date(a: Normalized, b: Normalized) -> int:
    x, y = a.birth_date, b.birth_date
    if x is None or y is None:
        return MISSING
    if x == y:
        return 0
    if x.year == y.year and x.month == y.day and x.day == y.month:
        return 1  # day and month transposed
    same = (x.year == y.year) + (x.month == y.month) + (x.day == y.day)
    if same == 2:
        return 2  # one part differs (a typo in day, month or year)
    if x.year == y.year:
        return 3  # year only
    return 4


def ssn(a: Normalized, b: Normalized) -> int:
    x, y = a.ssn, b.ssn
    if not x or not y:
        return MISSING
    if x == y:
        return 0
    return 1 if _osa(x, y) <= 1 else 2


def street_number(a: Normalized, b: Normalized) -> int:
    x, y = a.street_number, b.street_number
    if not x or not y:
        return MISSING
    return 0 if x == y else 1


def street(a: Normalized, b: Normalized) -> int:
    x, y = a.street, b.street
    if not x or not y:
        return MISSING
    return _fuzzy(x, y, 1)


def city(a: Normalized, b: Normalized) -> int:
    x, y = a.city, b.city
    if not x or not y:
        return MISSING
    return _fuzzy(x, y, 1)


def postcode(a: Normalized, b: Normalized) -> int:
    x, y = a.postcode, b.postcode
    if not x or not y:
        return MISSING
    if x == y:
        return 0
    if len(x) == len(y) and _osa(x, y) <= 1:
        return 1  # one typo
    if len(x) >= 3 and x[:3] == y[:3]:
        return 2  # same district (prefix)
    return 3


def region(a: Normalized, b: Normalized) -> int:
    x, y = a.region, b.region
    if not x or not y:
        return MISSING
    return 0 if x == y else 1


def country(a: Normalized, b: Normalized) -> int:
    x, y = a.country, b.country
    if not x or not y:
        return MISSING
    return 0 if x == y else 1


def location(a: Normalized, b: Normalized) -> int:
    x, y = a.location, b.location
    if not x or not y:
        return MISSING
    return _fuzzy(x, y, 1)


def handles(a: Normalized, b: Normalized) -> int:
    if not a.handles or not b.handles:
        return MISSING
    return 0 if a.handles & b.handles else 1


def avatar_url(a: Normalized, b: Normalized) -> int:
    if not a.avatar or not b.avatar:
        return MISSING
    return 0 if a.avatar == b.avatar else 1


def emails(a: Normalized, b: Normalized) -> int:
    if not a.emails or not b.emails:
        return MISSING
    if a.emails & b.emails:
        return 0
    if {e.split("@", 1)[0] for e in a.emails} & {e.split("@", 1)[0] for e in b.emails}:
        return 1  # same local part at another provider
    return 2


def phones(a: Normalized, b: Normalized) -> int:
    if not a.phones or not b.phones:
        return MISSING
    return 0 if a.phones & b.phones else 1


_FUZZY = ("exact", "jw_0.92", "jw_0.80", "else")

COMPARISONS: tuple[Comparison, ...] = (
    Comparison("given_name", ("exact", "nickname", "swapped", "initial", "jw_0.92", "jw_0.80", "else"),
               given_name, "normalized given name; nickname groups; swapped with surname; initial"),
    Comparison("surname", ("exact", "swapped", "jw_0.92", "jw_0.80", "else"), surname,
               "normalized surname; swapped with given name"),
    Comparison("full_name", _FUZZY, full_name,
               "display name (token order ignored), only when a side has no given name or surname"),
    Comparison("birth_date", ("exact", "transposed_day_month", "one_part_differs", "year_only", "else"),
               birth_date, "birth date"),
    Comparison("ssn", ("exact", "one_edit", "else"), ssn, "national id, one typo or transposition tolerated"),
    Comparison("street_number", ("exact", "else"), street_number, "house number parsed from the street"),
    Comparison("street", _FUZZY, street, "street words without the house number"),
    Comparison("city", _FUZZY, city, "city or suburb"),
    Comparison("postcode", ("exact", "one_edit", "prefix", "else"), postcode,
               "postcode: exact, one typo (same length), same first three characters"),
    Comparison("region", ("exact", "else"), region, "state or region"),
    Comparison("country", ("exact", "else"), country, "ISO country code"),
    Comparison("location", _FUZZY, location, "free-text profile location"),
    Comparison("handles", ("exact", "else"), handles, "any shared handle across networks"),
    Comparison("avatar_url", ("exact", "else"), avatar_url, "same avatar picture URL"),
    Comparison("emails", ("exact", "same_local_part", "else"), emails, "any shared e-mail address"),
    Comparison("phones", ("exact", "else"), phones, "any shared phone number"),
)

BY_NAME = {c.name: c for c in COMPARISONS}
