"""``ProfileFeatures``: what the match model knows about one profile, and how it is built
from what ingest passes on (display name, ``AuthorAttributes``, identifiers)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator

from socialzone_identity.matching import normalize as nz

# Identifier types whose value is a renameable user name (compared across networks).
HANDLE_TYPES = frozenset({"x_handle", "twitter_handle", "instagram", "mastodon", "reddit", "tiktok",
                          "threads", "bluesky", "github", "youtube_handle", "telegram"})
SSN_TYPES = frozenset({"ssn", "national_id", "soc_sec_id"})


class Normalized:
    """The compared forms of one profile, computed once when the profile is built."""

    __slots__ = ("given", "given_groups", "surname", "full", "name_key", "structured", "first_token", "last_token",
                 "birth_date", "street_number", "street", "street_parts", "city", "postcode", "region", "country",
                 "location", "handles", "avatar", "emails", "phones", "ssn")

    def __init__(self, p: ProfileFeatures) -> None:
        given_tokens = nz.name_tokens(p.given_name)
        self.given = "".join(given_tokens)
        self.given_groups = nz.nickname_groups(given_tokens[0]) if given_tokens else frozenset()
        self.surname = nz.name(p.surname)
        self.structured = bool(self.given or self.surname)
        if self.structured:
            tokens = [t for t in (self.given, self.surname) if t]
        else:
            tokens = list(nz.name_tokens(p.display_name))
        self.full = " ".join(tokens)
        # The name as a set of words, for its frequency among customers: two or more words
        # (a bare "Ana" is no name to count), order-free ("Silva Ana" is "Ana Silva").
        self.name_key = " ".join(sorted(self.full.split())) if len(self.full.split()) > 1 else ""
        self.first_token = tokens[0] if tokens else ""
        self.last_token = tokens[-1] if len(tokens) > 1 else ""
        self.birth_date = p.birth_date
        number, parts = "", []
        for line in (p.street or "").split(","):  # "12 Stanley St, Miami": two parts
            part_number, words = nz.street(line)
            number = number or part_number
            if words:
                parts.append(words)
        self.street_number, self.street, self.street_parts = number, " ".join(parts), tuple(parts)
        self.city = nz.fold(p.city)
        self.postcode = nz.postcode(p.postcode)
        self.region = nz.region(p.region)
        self.country = nz.country(p.country)
        self.location = nz.fold(p.location)
        self.handles = frozenset(h for h in map(nz.handle, p.handles) if h)
        self.avatar = nz.avatar_url(p.avatar_url)
        self.emails = frozenset(e for e in map(nz.email, p.emails) if e)
        self.phones = frozenset(n for n in map(nz.phone, p.phones) if n)
        self.ssn = nz.ssn(p.ssn)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:  # pydantic compares private attributes too
        return isinstance(other, Normalized) and self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]


class ProfileFeatures(BaseModel):
    """Everything the match model may compare about one profile. Every field is optional:
    a missing field is neither evidence for nor against a match."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    given_name: str | None = None
    surname: str | None = None
    display_name: str | None = None
    """Used for names only when the profile has neither given name nor surname."""
    handles: tuple[str, ...] = ()
    """User names on networks (``acme_fan``, ``user@mastodon.social``); compared across networks."""
    birth_date: date | None = None
    street: str | None = None
    """House number and street, as written (``"12 Stanley St"``)."""
    city: str | None = None
    postcode: str | None = None
    region: str | None = None
    country: str | None = None
    location: str | None = None
    """Free-text location from a social profile."""
    avatar_url: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    ssn: str | None = None
    """A national identity number, when a CRM holds one."""

    _n: Normalized = PrivateAttr()

    @field_validator("birth_date", mode="before")
    @classmethod
    def _lenient_date(cls, value: Any) -> date | None:
        return nz.parse_date(value) if value is not None else None

    def model_post_init(self, context: Any, /) -> None:
        self._n = Normalized(self)

    @property
    def normalized(self) -> Normalized:
        return self._n

    @classmethod
    def from_attributes(cls, display_name: str | None, attributes: Any,
                        identifiers: Iterable[Any] = ()) -> ProfileFeatures:
        """Build from what ingest passes on: ``Author.display_name``, ``Author.attributes``
        (an ``AuthorAttributes`` or its dict form) and ``Author.identifiers``.

        Identifiers of type ``email`` and ``phone`` feed the e-mail and phone features;
        handle types (``x_handle``, ``instagram``, ``mastodon``, ``reddit``, ...) the handles
        (a mastodon ``user@instance`` also contributes ``user``); ``ssn``/``national_id``
        the SSN. Platform user ids and ``crm:*`` ids are deliberately ignored: they are
        deterministic evidence, which identity resolves without the model. A dict of
        attributes may also carry ``ssn``.
        """
        if attributes is None:
            attrs: Mapping[str, Any] = {}
        elif isinstance(attributes, Mapping):
            attrs = attributes
        else:
            attrs = attributes.model_dump() if hasattr(attributes, "model_dump") else vars(attributes)
        handles: list[str] = []
        emails: list[str] = []
        phones: list[str] = []
        ssn = attrs.get("ssn")
        for identifier in identifiers:
            kind, value = _type_value(identifier)
            if not value:
                continue
            if kind == "email":
                emails.append(value)
            elif kind == "phone":
                phones.append(value)
            elif kind in HANDLE_TYPES or kind.endswith("_handle"):
                handles.append(value)
                if kind == "mastodon" and "@" in value.lstrip("@"):
                    handles.append(value.lstrip("@").split("@", 1)[0])
            elif kind in SSN_TYPES:
                ssn = value

        def text(key: str) -> str | None:
            value = attrs.get(key)
            return str(value) if value not in (None, "") else None

        return cls(given_name=text("given_name"), surname=text("surname"), display_name=display_name,
                   handles=tuple(handles), birth_date=nz.parse_date(attrs.get("birth_date")),
                   street=text("street"), city=text("city"), postcode=text("postcode"),
                   region=text("region"), country=text("country"), location=text("location"),
                   avatar_url=text("avatar_url"), emails=tuple(emails), phones=tuple(phones),
                   ssn=str(ssn) if ssn not in (None, "") else None)


def _type_value(identifier: Any) -> tuple[str, str]:
    if isinstance(identifier, Mapping):
        return str(identifier.get("type", "")).casefold(), str(identifier.get("value", "") or "")
    return str(getattr(identifier, "type", "")).casefold(), str(getattr(identifier, "value", "") or "")
