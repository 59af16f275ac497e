"""Connectors: each turns a platform's own format into canonical interactions.

A connector is a pure function from the platform's payload to :class:`Parsed`:
the items to record (``Candidate``), the deletions to apply (``Retraction``) and the
results already decided (items rejected with the fields at fault, or ignored).
Field paths in errors are the platform's own, from the payload's root
(``data[2].created_at``), so a sender can find what was wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pydantic import ValidationError

from socialzone_ingest.domain import Candidate, validation_errors
from socialzone_ingest.models import FieldError, InteractionIn, ItemResult


@dataclass
class Retraction:
    index: int
    source: str
    external_id: str
    retracted_at: datetime | None = None
    reason: str = "deleted"
    path: str | None = None


@dataclass
class Parsed:
    candidates: list[Candidate] = field(default_factory=list)
    retractions: list[Retraction] = field(default_factory=list)
    results: list[ItemResult] = field(default_factory=list)
    count: int = 0

    def next_index(self) -> int:
        self.count += 1
        return self.count - 1

    def reject(self, index: int, errors: list[FieldError], *, path: str | None = None,
               line: int | None = None) -> None:
        self.results.append(ItemResult(index=index, path=path, line=line, status="rejected", errors=errors))

    def ignore(self, index: int, *, path: str | None = None, reason: str | None = None) -> None:
        errors = [FieldError(field=path or "", message=reason)] if reason else None
        self.results.append(ItemResult(index=index, path=path, status="ignored", errors=errors))

    def add(self, index: int, fields: dict, *, path: str | None, aliases: tuple[str, ...] = (),
            field_names: dict[str, str] | None = None, line: int | None = None,
            identifier_fields: tuple[str, ...] = ()) -> None:
        """Validate the canonical fields built from a platform item; a failure is reported on
        the platform's field (``field_names`` maps canonical names to the platform's)."""
        try:
            item = InteractionIn.model_validate(fields)
        except ValidationError as exc:
            errors = []
            for error in validation_errors(exc):
                top = error.field.split(".")[0].split("[")[0]
                native = (field_names or {}).get(top)
                name = native if native else error.field
                errors.append(FieldError(field=f"{path}.{name}" if path else name, message=error.message))
            self.reject(index, errors, path=path, line=line)
            return
        prefixed = tuple(f"{path}.{f}" if path else f for f in identifier_fields)
        self.candidates.append(Candidate(item=item, index=index, line=line, aliases=aliases, path=path,
                                         identifier_fields=prefixed))


def native_errors(exc: ValidationError, path: str) -> list[FieldError]:
    return validation_errors(exc, prefix=path)


def epoch(value: float | int) -> datetime:
    """Seconds (or milliseconds, from their size) since the epoch as an aware UTC time;
    ValueError when out of range (or not a number: NaN)."""
    seconds = value / 1000 if value > 10_000_000_000 else value
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        # a ValueError, so that a validator calling this reports the field (a 422, not a 500)
        raise ValueError("not a time: out of range (seconds since 1970-01-01 UTC)") from None


_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_NOT_LANGUAGES = {"und", "zxx", "qme", "qst", "qht", "qam", "art", "mul"}


def language(value: str | None) -> str | None:
    """A declared language if it is a real BCP 47 tag (networks use "und", "qme"... otherwise)."""
    if not value:
        return None
    parts = value.replace("_", "-").split("-")
    parts[0] = parts[0].lower()
    value = "-".join([parts[0], *(p.upper() if len(p) == 2 else p for p in parts[1:])])
    if parts[0] in _NOT_LANGUAGES or not _LANG.match(value):
        return None
    return value  # e.g. "en-US"


def html_to_text(html: str | None) -> str | None:
    """Plain text of an HTML fragment: paragraphs and line breaks kept as new lines."""
    if html is None:
        return None
    if "<" not in html and "&" not in html:
        return html.strip()
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(["p", "div", "li", "blockquote", "h1", "h2", "h3", "h4"]):
        block.insert_after("\n\n")
    text = soup.get_text()
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r"\n[ \t]+", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
