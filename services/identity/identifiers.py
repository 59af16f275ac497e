"""Typed identifiers: normalization, strength, junk blocklist, caps and hashing.

Every identifier is ``(type, value)`` with a normalized value, so the same person
written two ways is one key: ``email`` lower-cased and validated (email-validator),
``phone`` in E.164 (phonenumbers), ``x_handle`` without ``@`` and lower-cased,
``mastodon`` as ``user@instance``. A value that cannot be normalized is rejected
with a reason (:class:`InvalidIdentifier`); a junk value (``unknown``,
``test@test.com``, the company's own support address) is never an identifier.

Strength: platform user ids and CRM ids are *strong* (they prove the person);
handles, device and cookie ids are *weak* (renamed, shared). E-mail addresses and
phone numbers are strong only when the record vouches for them (a CRM record or a
verified profile); in an ordinary social post they are weak.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email

Strength = Literal["strong", "weak"]

# Platform user ids and CRM ids: stable, issued by a system that knows the person.
PLATFORM_TYPES = frozenset({"x", "facebook", "instagram", "mastodon", "reddit", "tiktok", "linkedin", "youtube"})
# Handles that can be renamed, tied to the platform whose stable id they belong to.
HANDLE_TYPES = {"x_handle": "x", "instagram_handle": "instagram", "tiktok_handle": "tiktok"}
CONTACT_TYPES = frozenset({"email", "phone"})
SHARED_TYPES = frozenset({"device", "web_cookie"})
CRM_PLAIN = "crm"

_CRM_SYSTEM = re.compile(r"^crm:[a-z0-9][a-z0-9_.-]{0,47}$")
_NUMERIC_ID = re.compile(r"^[0-9]{1,24}$")
_PLATFORM_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_X_HANDLE = re.compile(r"^[a-z0-9_]{1,15}$")
_HANDLE = re.compile(r"^[a-z0-9_.]{1,64}$")
_MASTODON = re.compile(r"^[a-z0-9_]{1,64}@([a-z0-9-]+\.)+[a-z]{2,63}$")
_REDDIT = re.compile(r"^[a-z0-9_-]{3,20}$")
_OPAQUE = re.compile(r"^[\x21-\x7e]{4,256}$")


class InvalidIdentifier(ValueError):
    """The value is not a valid identifier of its type (the message says why)."""


@dataclass(frozen=True, slots=True)
class Normalized:
    type: str
    value: str

    @property
    def key(self) -> str:
        return f"{self.type}:{self.value}"

    @property
    def anchor_type(self) -> str | None:
        """For a handle: the type of the stable platform id it belongs to."""
        return HANDLE_TYPES.get(self.type)


def known_type(kind: str) -> bool:
    return (kind in PLATFORM_TYPES or kind in HANDLE_TYPES or kind in CONTACT_TYPES or kind in SHARED_TYPES
            or kind == CRM_PLAIN or bool(_CRM_SYSTEM.match(kind)))


def type_strength(kind: str, *, vouched: bool = False) -> Strength:
    """How much an identifier of this type proves, in a record that does (not) vouch for it."""
    if kind in PLATFORM_TYPES or kind == CRM_PLAIN or kind.startswith("crm:"):
        return "strong"
    if kind in CONTACT_TYPES:
        return "strong" if vouched else "weak"
    return "weak"


@lru_cache(maxsize=200_000)
def _normalize(kind: str, raw: str, region: str) -> str:
    value = raw.strip()
    if not value:
        raise InvalidIdentifier("empty value")
    if kind == "email":
        try:
            result = validate_email(value, check_deliverability=False, allow_smtputf8=True)
        except EmailNotValidError as exc:
            raise InvalidIdentifier(f"not an e-mail address: {exc}") from None
        return result.normalized.lower()
    if kind == "phone":
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException as exc:
            raise InvalidIdentifier(f"not a phone number: {exc}") from None
        if not phonenumbers.is_valid_number(number):
            raise InvalidIdentifier("not a valid phone number for its region")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if kind == "x":
        if not _NUMERIC_ID.match(value):
            raise InvalidIdentifier("an X user id is numeric (the handle is type x_handle)")
        return value.lstrip("0") or "0"
    if kind == "x_handle":
        value = value.lstrip("@").lower()
        if not _X_HANDLE.match(value):
            raise InvalidIdentifier("an X handle has 1-15 letters, digits or underscores")
        return value
    if kind in HANDLE_TYPES:
        value = value.lstrip("@").lower()
        if not _HANDLE.match(value):
            raise InvalidIdentifier("a handle has 1-64 letters, digits, dots or underscores")
        return value
    if kind == "mastodon":
        value = value.lstrip("@").lower()
        if not _MASTODON.match(value):
            raise InvalidIdentifier("a Mastodon account is user@instance")
        return value
    if kind == "reddit":
        value = value.lower().removeprefix("/u/").removeprefix("u/")
        if not _REDDIT.match(value):
            raise InvalidIdentifier("a Reddit username has 3-20 letters, digits, - or _")
        return value
    if kind in PLATFORM_TYPES:
        if not _PLATFORM_ID.match(value):
            raise InvalidIdentifier("a platform user id has 1-128 letters, digits or . _ : -")
        return value
    if kind == CRM_PLAIN or _CRM_SYSTEM.match(kind):
        if len(value) > 256 or any(c in value for c in "\r\n\t"):
            raise InvalidIdentifier("a CRM id is one line of at most 256 characters")
        return value
    if kind in SHARED_TYPES:
        if not _OPAQUE.match(value):
            raise InvalidIdentifier("a device or cookie id has 4-256 printable characters")
        return value
    raise InvalidIdentifier(f"unknown identifier type {kind!r}")


class Rules:
    """Normalization with the configured default phone region, blocklist and caps."""

    def __init__(self, *, region: str = "US", blocklist: list[str] | tuple[str, ...] = (),
                 caps: dict[str, int] | None = None, default_cap: int = 50, salt: str = "") -> None:
        self.region = region.upper()
        self.exact_junk = {b.strip().lower() for b in blocklist if "*" not in b and "?" not in b}
        self.pattern_junk = [b.strip().lower() for b in blocklist if "*" in b or "?" in b]
        # the wildcard entries as one regular expression (what fnmatchcase does for each)
        self._junk_pattern = (re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in self.pattern_junk))
                              if self.pattern_junk else None)
        self.caps = dict(caps or {})
        self.default_cap = default_cap
        self.salt = salt
        self._cache: dict[tuple[str, str], Normalized | str] = {}
        self._hashes: dict[Normalized, str] = {}

    @classmethod
    def from_settings(cls, settings) -> Rules:
        return cls(region=settings.phone_default_region, blocklist=settings.identifier_blocklist,
                   caps=settings.identifier_caps, default_cap=settings.default_identifier_cap,
                   salt=settings.suppression_salt)

    def normalize(self, kind: str, value: str) -> Normalized:
        """The normalized identifier; :class:`InvalidIdentifier` for invalid or junk values."""
        key = (kind, value)
        found = self._cache.get(key)
        if found is None:
            try:
                found = self._normalize(kind, value)
            except InvalidIdentifier as exc:
                found = str(exc)
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[key] = found
        if isinstance(found, str):
            raise InvalidIdentifier(found)
        return found

    def _normalize(self, kind: str, value: str) -> Normalized:
        kind = kind.strip().lower()
        if not known_type(kind):
            raise InvalidIdentifier(f"unknown identifier type {kind!r}")
        if value is None:
            raise InvalidIdentifier("empty value")
        normalized = _normalize(kind, value, self.region)
        if self.is_junk(normalized) or self.is_junk(value.strip().lower()):
            raise InvalidIdentifier("a placeholder or blocklisted value, never an identifier")
        return Normalized(kind, normalized)

    def parse(self, text: str) -> Normalized:
        """``type:value`` (the type may itself be ``crm:<system>``)."""
        kind, sep, value = text.partition(":")
        if kind == "crm" and ":" in value:
            system, _, value = value.partition(":")
            kind = f"crm:{system}"
        if not sep or not value:
            raise InvalidIdentifier("expected type:value, e.g. email:ana@example.net")
        return self.normalize(kind, value)

    def is_junk(self, value: str) -> bool:
        value = value.lower()
        if value in self.exact_junk:
            return True
        return self._junk_pattern is not None and self._junk_pattern.match(value) is not None

    def cap(self, kind: str) -> int:
        return self.caps.get(kind, self.default_cap)

    def suppression_hash(self, identifier: Normalized) -> str:
        """What the suppression list keeps of an erased person's identifier: a salted hash."""
        found = self._hashes.get(identifier)
        if found is None:
            found = hashlib.sha256(f"{self.salt}\x00{identifier.type}\x00{identifier.value}".encode()).hexdigest()
            if len(self._hashes) > 200_000:
                self._hashes.clear()
            self._hashes[identifier] = found
        return found


def type_key(kind: str) -> str:
    """An identifier type as :meth:`Rules.normalize` spells it: raw records (an event's
    author identifiers) may say "EMAIL" or " Phone", which must mask like "email"."""
    return (kind or "").strip().lower()


def mask(kind: str, value: str) -> str:
    """An e-mail address or phone number with most of it hidden; other types unchanged."""
    kind = type_key(kind)
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}" if domain else "***"
    if kind == "phone":
        return value[:3] + "*" * max(0, len(value) - 5) + value[-2:] if len(value) > 5 else "***"
    return value


def is_pii_type(kind: str) -> bool:
    return type_key(kind) in CONTACT_TYPES
