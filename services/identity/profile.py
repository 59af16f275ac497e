"""The customer profile: per-field reconciliation and the Customer 360 summary.

Reconciliation, per field: the value from the most trusted source wins (an agent
over a CRM record over a verified profile over an ordinary post); between equally
trusted sources the most recent wins. Names and locations are kept as lists of
what the customer has been known by (at most 10 each).

The 360 summary is computed from the timeline (interactions per channel, sentiment,
lifetime value, open cases and leads, advocate tier) so that it is right after a
merge or an unmerge without any counters to repair.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from socialzone_identity.models import ConsentRecord, Customer, TimelineEntry

T = TimelineEntry.__table__
FIELDS = ("given_name", "surname", "birth_date", "street", "city", "postcode", "region", "country",
          "location", "avatar_url", "bio", "display_name")
TRUST = {"agent": 4, "crm": 3, "verified": 2, "social": 1}
MAX_LIST = 10


def observation(interaction: Any, *, crm_sources: list[str]) -> tuple[dict[str, Any], str]:
    """The profile fields an interaction discloses about its author, and their source kind."""
    author = interaction.author
    attributes = author.attributes
    if interaction.source in crm_sources or any(i.type.startswith("crm") for i in author.identifiers):
        kind = "crm"
    elif attributes is not None and attributes.verified:
        kind = "verified"
    else:
        kind = "social"
    values: dict[str, Any] = {}
    if author.display_name:
        values["display_name"] = author.display_name.strip()[:256]
    if attributes is not None:
        for name in FIELDS[:-1]:
            value = getattr(attributes, name, None)
            if value is None or value == "":
                continue
            values[name] = value.isoformat() if isinstance(value, date) else str(value).strip()
    return values, kind


def reconcile(profile: dict[str, Any] | None, values: dict[str, Any], *, kind: str, at: datetime,
              origin: str) -> tuple[dict[str, Any], str]:
    """Fold one observation into a profile. Returns the profile and what changed:
    ``"value"`` (a field, name or location: worth re-matching), ``"time"`` (only when
    a value was last seen: keeps "most recent wins" right when observations arrive out
    of order) or ``""`` (nothing)."""
    trust = TRUST.get(kind, 1)
    stamp = at.astimezone(timezone.utc).isoformat()
    # the name and place the observation gives, worked out once for both steps below
    full, place = _full_name(values), _place(values)
    if profile and _already_known(profile, values, trust, stamp, full, place):
        return profile, ""
    profile = dict(profile or {})
    fields = dict(profile.get("fields") or {})
    names = list(profile.get("names") or [])
    locations = list(profile.get("locations") or [])
    changed = ""
    for name, value in values.items():
        current = fields.get(name)
        if current is None or (trust, stamp) >= (current["trust"], current["at"]):
            if current is None or current["v"] != value or current["trust"] != trust:
                changed = "value"
            elif not changed:
                changed = "time"
            fields[name] = {"v": value, "src": kind, "trust": trust, "at": stamp, "from": origin}
    for name in (values.get("display_name"), full):
        if name and name not in names and len(names) < MAX_LIST:
            names.append(name)
            changed = "value"
    if place and place not in locations and len(locations) < MAX_LIST:
        locations.append(place)
        changed = "value"
    profile.update(fields=fields, names=names, locations=locations)
    return profile, changed


def _full_name(values: dict[str, Any]) -> str:
    """Given name and surname, either alone when the other is not known ("" for neither)."""
    given, surname = values.get("given_name"), values.get("surname")
    if given and surname:
        return " ".join((given, surname))
    return given or surname or ""


def _place(values: dict[str, Any]) -> str:
    """The free-text location, else "city, country" from what of the two is known."""
    location = values.get("location")
    if location:
        return location
    city, country = values.get("city"), values.get("country")
    if city and country:
        return ", ".join((city, country))
    return city or country or ""


def _already_known(profile: dict[str, Any], values: dict[str, Any], trust: int, stamp: str, full: str,
                   place: str) -> bool:
    """The observation repeats what the profile holds from a source at least as trusted,
    seen no earlier: nothing to do."""
    fields = profile.get("fields") or {}
    for name, value in values.items():
        current = fields.get(name)
        if current is None or current["v"] != value or (current["trust"], current["at"]) < (trust, stamp):
            return False
    names = profile.get("names") or ()
    name = values.get("display_name")
    if name and name not in names and len(names) < MAX_LIST:
        return False
    if full and full not in names and len(names) < MAX_LIST:
        return False
    locations = profile.get("locations") or ()
    return not place or place in locations or len(locations) >= MAX_LIST


def merge_profiles(survivor: dict[str, Any] | None, merged: dict[str, Any] | None) -> dict[str, Any]:
    """Per field the more trusted, then more recent, value; names and locations united."""
    result = {"fields": dict((survivor or {}).get("fields") or {}),
              "names": list((survivor or {}).get("names") or []),
              "locations": list((survivor or {}).get("locations") or [])}
    for name, field in ((merged or {}).get("fields") or {}).items():
        current = result["fields"].get(name)
        if current is None or (field["trust"], field["at"]) > (current["trust"], current["at"]):
            result["fields"][name] = field
    for key in ("names", "locations"):
        for item in (merged or {}).get(key) or []:
            if item not in result[key] and len(result[key]) < MAX_LIST:
                result[key].append(item)
    return result


def observed_lists(events) -> tuple[list[str], list[str]]:
    """The names and places that attributed interactions (their events' data, oldest
    first) disclose about their authors, as :func:`reconcile` collects them."""
    names: list[str] = []
    places: list[str] = []
    for data in events:
        author = ((data or {}).get("interaction") or {}).get("author") or {}
        values = {k: str(v).strip() for k, v in (author.get("attributes") or {}).items()
                  if k in FIELDS and v not in (None, "")}
        shown = (author.get("display_name") or "").strip()[:256]
        for name in (shown, _full_name(values)):
            if name and name not in names:
                names.append(name)
        place = _place(values)
        if place and place not in places:
            places.append(place)
    return names, places


def _kept(current: list[str], observed: list[str]) -> list[str]:
    """What is still observed, in the profile's order, then what now has room (at most MAX_LIST)."""
    still = set(observed)
    kept = [item for item in current if item in still]
    kept += [item for item in observed if item not in kept]
    return kept[:MAX_LIST]


def without_origins(profile: dict[str, Any] | None, origins: set[str], before: dict[str, Any] | None, *,
                    names: list[str], locations: list[str]) -> dict[str, Any]:
    """The survivor's profile after an unmerge: the fields that came from the restored
    customers go; the survivor's own value from before the merge comes back. Names and
    locations are rebuilt from the observations that stay (``names``, ``locations``: see
    :func:`observed_lists`), not taken from before the merge: that would drop what other
    merged customers brought and what the survivor learned since."""
    fields = {k: v for k, v in ((profile or {}).get("fields") or {}).items() if v.get("from") not in origins}
    restored = {"fields": fields, "names": _kept(list((profile or {}).get("names") or []), names),
                "locations": _kept(list((profile or {}).get("locations") or []), locations)}
    for name, field in ((before or {}).get("fields") or {}).items():
        restored["fields"].setdefault(name, field)
    return restored


def display_name(profile: dict[str, Any] | None) -> str | None:
    fields = (profile or {}).get("fields") or {}
    if "display_name" in fields:
        return fields["display_name"]["v"]
    full = " ".join(fields[f]["v"] for f in ("given_name", "surname") if f in fields)
    return full or None


def search_text(profile: dict[str, Any] | None) -> str:
    names = list((profile or {}).get("names") or [])
    return " | ".join(n.lower() for n in names)[:2000]


def apply_profile(customer_row: dict[str, Any] | Customer, profile: dict[str, Any]) -> dict[str, Any]:
    return {"profile": profile, "display_name": display_name(profile), "search_text": search_text(profile)}


def current_consents(session: Session, customer_id: str) -> dict[str, dict[str, Any]]:
    rows = session.execute(select(ConsentRecord).where(ConsentRecord.customer_id == customer_id)
                           .order_by(ConsentRecord.changed_at, ConsentRecord.id)).scalars().all()
    current: dict[str, dict[str, Any]] = {}
    for row in rows:
        current[row.purpose] = {"purpose": row.purpose, "granted": row.granted, "source": row.source,
                                "changed_at": _aware(row.changed_at)}
    return current


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def summary(session: Session, customer: Customer) -> dict[str, Any]:
    """The Customer 360 figures computed from the timeline."""
    cid = customer.id
    interactions = (T.c.customer_id == cid) & (T.c.event_type == "identity.interaction.attributed")
    per_channel = {row.channel or "unknown": row.n for row in session.execute(
        select(T.c.channel, func.count().label("n")).where(interactions).group_by(T.c.channel))}
    languages = {row.language: row.n for row in session.execute(
        select(T.c.language, func.count().label("n")).where(interactions, T.c.language.is_not(None))
        .group_by(T.c.language))}
    stats = session.execute(select(func.min(T.c.occurred_at), func.max(T.c.occurred_at), func.avg(T.c.sentiment),
                                   func.count(T.c.sentiment)).where(interactions)).one()
    ltv = {row.currency: row.total for row in session.execute(
        select(T.c.currency, func.sum(T.c.amount).label("total"))
        .where(interactions, T.c.amount.is_not(None), T.c.currency.is_not(None)).group_by(T.c.currency))}
    cases: dict[str, dict[str, Any]] = {}
    leads: dict[str, dict[str, Any]] = {}
    tier = None
    won: dict[str, Decimal] = defaultdict(Decimal)
    department_rows = session.execute(
        select(T.c.event_type, T.c.ref_id, T.c.occurred_at, T.c.event)
        .where(T.c.customer_id == cid, T.c.department.in_(("care", "sales", "marketing")))
        .order_by(T.c.occurred_at, T.c.id)).all()
    for row in department_rows:
        data = row.event or {}
        t = row.event_type
        if t in ("care.case.opened", "care.case.reopened"):
            case = cases.setdefault(row.ref_id, {"case_id": row.ref_id})
            case.update(status="open", since=_aware(row.occurred_at))
            for key in ("priority", "queue", "topic", "channel"):
                if data.get(key):
                    case[key] = data[key]
        elif t == "care.case.resolved" and row.ref_id in cases:
            cases[row.ref_id]["status"] = "resolved"
        elif t == "care.case.assigned" and row.ref_id in cases:
            cases[row.ref_id]["assignee_id"] = data.get("assignee_id")
        elif t == "marketing.advocate.tier_changed":
            tier = {"tier": data.get("tier"), "score": data.get("score"), "since": _aware(row.occurred_at)}
        elif t == "sales.lead.created":
            leads[row.ref_id] = {"lead_id": row.ref_id, "stage": data.get("stage", "new"), "score": data.get("score"),
                                 "source": data.get("source"), "since": _aware(row.occurred_at)}
        elif t == "sales.lead.stage_changed" and data.get("lead_id") in leads:
            lead = leads[data["lead_id"]]
            lead["stage"] = data.get("to_stage")
            if data.get("score") is not None:
                lead["score"] = data["score"]
        elif t in ("sales.deal.won", "sales.deal.lost"):
            if data.get("lead_id") in leads:
                leads[data["lead_id"]]["stage"] = "won" if t == "sales.deal.won" else "lost"
            if t == "sales.deal.won" and data.get("currency"):
                won[data["currency"]] += Decimal(str(data.get("amount") or 0))
    avg = stats[2]
    return {
        "first_seen": _aware(stats[0]), "last_seen": _aware(stats[1]),
        "interactions": {"total": sum(per_channel.values()), "by_channel": per_channel},
        "languages": languages,
        "average_sentiment": round(float(avg), 4) if avg is not None else None,
        "sentiment_samples": stats[3],
        "lifetime_value": {c: format(Decimal(str(v)).quantize(Decimal("0.01")), "f") for c, v in ltv.items()},
        "deals_won": {c: format(v.quantize(Decimal("0.01")), "f") for c, v in won.items()},
        "open_cases": [c for c in cases.values() if c.get("status") == "open"],
        "advocate_tier": tier,
        "open_leads": [lead for lead in leads.values() if lead["stage"] not in ("won", "lost")],
    }
