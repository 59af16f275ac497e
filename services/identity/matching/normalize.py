"""Normalizers: turn what a source wrote into the forms the match model compares.

Every function is total (never raises on odd input) and idempotent:
``f(f(x)) == f(x)``; the property tests hold them to that.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_DIGITS = re.compile(r"\D+")
_HOUSE_NUMBER = re.compile(r"^\d+[a-z]?$")

# Letters NFKD does not decompose into ASCII plus a combining mark.
_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe", "ð": "d", "þ": "th", "ł": "l",
                       "đ": "d", "ı": "i", "ŋ": "ng"})


def fold(text: str | None) -> str:
    """Lower case, accents removed, every run of punctuation or space one space."""
    if not text:
        return ""
    if text.isascii():
        return _NOT_ALNUM.sub(" ", text.lower()).strip()
    text = unicodedata.normalize("NFKD", text.casefold().translate(_FOLD))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return _NOT_ALNUM.sub(" ", text).strip()


def name(text: str | None) -> str:
    """A name as compared: folded, inner spaces removed (``"Mary-Ann"`` == ``"maryann"``)."""
    return fold(text).replace(" ", "")


def name_tokens(text: str | None) -> tuple[str, ...]:
    return tuple(fold(text).split())


def street(text: str | None) -> tuple[str, str]:
    """``(house number, street words)``: ``"12 Stanley St., Miami"`` -> ``("12", "stanley st miami")``."""
    tokens = fold(text).split()
    number = ""
    for i, token in enumerate(tokens):
        if _HOUSE_NUMBER.match(token):
            number = token
            del tokens[i]
            break
    return number, " ".join(tokens)


def postcode(text: str | None) -> str:
    return fold(text).replace(" ", "").upper()


def region(text: str | None) -> str:
    return fold(text)


def country(text: str | None) -> str:
    return fold(text).replace(" ", "").upper()


def handle(text: str | None) -> str:
    """``"@Acme_Fan"``, ``"https://x.com/acme_fan"`` -> ``"acme_fan"``; mastodon keeps ``user@instance``."""
    if not text:
        return ""
    value = text.strip().casefold()
    value = re.sub(r"^[a-z]+://", "", value)
    if "/" in value:  # a profile URL: the last path segment is the handle
        value = [part for part in value.split("/") if part][-1] if value.strip("/") else ""
    return re.sub(r"[^0-9a-z_.@-]+", "", value).lstrip("@")


def email(text: str | None) -> str:
    """Lower case; for Gmail, dots and ``+tags`` in the local part do not count."""
    if not text or "@" not in text:
        return ""
    local, _, domain = text.strip().casefold().rpartition("@")
    domain = domain.strip()
    if domain in ("gmail.com", "googlemail.com"):
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}" if local and domain else ""


def phone(text: str | None) -> str:
    """Digits only (ingest already gives E.164); fewer than 6 digits is not a phone number."""
    digits = _DIGITS.sub("", text or "")
    return digits if len(digits) >= 6 else ""


def avatar_url(text: str | None) -> str:
    """Scheme, query and fragment dropped, host lower-cased: the same picture file compares equal."""
    if not text:
        return ""
    value = _SCHEMES.sub("", text.strip())
    # Trailing blanks and slashes go after the query is cut ("0 ?x" and "0" are one file),
    # so that normalizing twice changes nothing.
    value = _TRAILING.sub("", value.split("#", 1)[0].split("?", 1)[0])
    host, _, path = value.partition("/")
    return f"{host.lower()}/{path}" if path else host.lower()


_SCHEMES = re.compile(r"^(?:\s*[A-Za-z][A-Za-z0-9+.-]*://)+\s*")
_TRAILING = re.compile(r"[\s/]+$")


def ssn(text: str | None) -> str:
    return fold(text).replace(" ", "")


def parse_date(value: object) -> date | None:
    """A ``date``, ``"YYYY-MM-DD"`` or ``"YYYYMMDD"``; anything else (including an impossible date) is None."""
    if isinstance(value, date):
        return value
    digits = _DIGITS.sub("", str(value or ""))
    if len(digits) != 8:
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


# --- nicknames ---------------------------------------------------------------------------------
# Groups of given names that are the same name for matching purposes (English diminutives and
# common cross-language forms). A name may sit in several groups ("alex"); two names match as
# nicknames when they share a group. Keep it small and uncontroversial: every entry adds weight.
_NICKNAME_GROUPS: tuple[str, ...] = (
    "alexander alex alec sandy sasha xander",
    "alexandra alex alexa sandra sandy sasha lexi",
    "andrew andy drew",
    "anthony antony tony",
    "benjamin ben benny benji",
    "catherine katherine kathryn kate katie kathy cathy kat kitty",
    "charles charlie chuck chas carl",
    "christopher chris kit topher",
    "christine christina chris chrissy tina",
    "daniel dan danny",
    "david dave davey",
    "deborah debora debbie deb",
    "edward ed eddie ted teddy ned",
    "elizabeth liz lizzie beth betty bess eliza libby elise",
    "eleanor elinor ellie nell nora",
    "frederick fred freddie",
    "gregory greg",
    "harold harry hal",
    "henry harry hank hal",
    "jacob jake",
    "james jim jimmy jamie",
    "jennifer jenny jen jenna",
    "jessica jess jessie",
    "john jon johnny jack",
    "jonathan jon jonny nathan",
    "joseph joe joey",
    "joshua josh",
    "kenneth ken kenny",
    "lawrence laurence larry laurie",
    "margaret maggie meg peggy marge madge greta",
    "matthew matt matty",
    "michael mike mick mickey micky",
    "nicholas nick nicky nico",
    "patricia pat patty trish tricia",
    "patrick pat paddy",
    "peter pete",
    "rebecca becky becca",
    "richard rick ricky dick rich",
    "robert rob robbie bob bobby bert",
    "ronald ron ronnie",
    "samantha sam sammy",
    "samuel sam sammy",
    "stephen steven steve stevie",
    "susan sue susie suzanne",
    "thomas tom tommy",
    "timothy tim timmy",
    "victoria vicky tori",
    "william will bill billy willy liam",
    "zachary zach zack",
    "giuseppe beppe peppe",
    "francisco paco pancho",
    "jose pepe",
    "johann johannes hans",
    "aleksandr sasha sergey",
)


def _nickname_index() -> dict[str, frozenset[int]]:
    index: dict[str, set[int]] = {}
    for group, names in enumerate(_NICKNAME_GROUPS):
        for item in names.split():
            index.setdefault(item, set()).add(group)
    return {key: frozenset(value) for key, value in index.items()}


NICKNAMES = _nickname_index()


def nickname_groups(given: str) -> frozenset[int]:
    """The nickname groups of a normalized given name (empty when it is in none)."""
    return NICKNAMES.get(given, frozenset())
