"""CRM transactions: JSON records or a CSV export with a header row, one record per row.

Columns (JSON fields have the same names):

| column | |
|---|---|
| ``transaction_id`` | the record's id in the CRM (de-duplication key; without it, a hash of the row) |
| ``type`` | ``order``, ``refund``, ``call``, ``email``, ``ticket`` or ``contact`` (a contact card) |
| ``occurred_at`` | ISO 8601 time with its zone |
| ``amount``, ``currency`` | a decimal amount and its ISO 4217 code (orders and refunds) |
| ``crm_id``, ``email``, ``phone`` | the customer's identifiers: at least one |
| ``name``, ``given_name``, ``surname``, ``birth_date``, ``street``, ``city``, ``postcode``, ``region``, ``country`` | the contact card |
| ``text`` | a note, the subject of an e-mail, the summary of a call |
| ``items`` | JSON only: ``[{"sku", "name", "quantity", "unit_price"}]`` |

A CSV is read as RFC 4180 (comma separated, ``""`` for a quote in a quoted cell), or as
semicolon or tab separated when its header row clearly is. Unknown columns are ignored (and
listed in the answer). Each row is valid or rejected on its own, with its row number (the
header is row 1); a JSON record's errors are named from the payload's root (``transactions[0].type``).
"""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from socialzone_ingest.connectors import Parsed
from socialzone_ingest.domain import validation_errors
from socialzone_ingest.models import FieldError, TransactionItemIn

SOURCE = "crm"
_KINDS = {"order": "transaction", "refund": "transaction", "ticket": "transaction", "call": "call",
          "email": "email", "contact": "contact"}


class CrmRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, coerce_numbers_to_str=True)

    transaction_id: str | None = Field(default=None, max_length=512)
    type: Literal["order", "refund", "call", "email", "ticket", "contact"]
    occurred_at: AwareDatetime
    amount: Decimal | None = Field(default=None, max_digits=18, decimal_places=4, allow_inf_nan=False)
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    crm_id: str | None = Field(default=None, max_length=512)
    email: str | None = Field(default=None, max_length=512)
    phone: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=300)
    given_name: str | None = Field(default=None, max_length=200)
    surname: str | None = Field(default=None, max_length=200)
    birth_date: date | None = None
    street: str | None = Field(default=None, max_length=300)
    city: str | None = Field(default=None, max_length=200)
    postcode: str | None = Field(default=None, max_length=32)
    region: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")
    text: str | None = Field(default=None, max_length=100_000)
    items: list[TransactionItemIn] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _checks(self) -> CrmRecord:
        if not (self.crm_id or self.email or self.phone):
            raise ValueError("at least one of crm_id, email, phone is required")
        if self.amount is not None and not self.currency:
            raise ValueError("currency is required with an amount")
        return self


FIELDS = set(CrmRecord.model_fields)


def _to_fields(record: CrmRecord) -> dict[str, Any]:
    identifiers = [{"type": t, "value": v} for t, v in (("crm", record.crm_id), ("email", record.email),
                                                         ("phone", record.phone)) if v]
    attributes = {k: getattr(record, k) for k in ("given_name", "surname", "birth_date", "street", "city",
                                                  "postcode", "region", "country") if getattr(record, k)}
    fields: dict[str, Any] = {
        "source": SOURCE, "kind": _KINDS[record.type], "external_id": record.transaction_id,
        "occurred_at": record.occurred_at,
        "author": {"identifiers": identifiers, "display_name": record.name,
                   **({"attributes": attributes} if attributes else {})},
        "text": record.text,
    }
    if record.type != "contact":
        fields["transaction"] = {"type": record.type, "amount": record.amount, "currency": record.currency,
                                 "items": [i.model_dump() for i in record.items]}
    return fields


def _one(parsed: Parsed, raw: Any, *, index: int, line: int | None, path: str | None) -> None:
    try:
        record = CrmRecord.model_validate(raw)
    except ValidationError as exc:
        errors = validation_errors(exc, prefix=path or "")
        for error in errors:  # the record-level checks name their fields
            if error.field in ("body", path) and "currency" in error.message:
                error.field = f"{path}.currency" if path else "currency"
            elif error.field in ("body", path) and "crm_id" in error.message:
                error.field = f"{path}.crm_id|email|phone" if path else "crm_id|email|phone"
        parsed.reject(index, errors, line=line, path=path)
        return
    parsed.add(index, _to_fields(record), path=path, line=line,
               field_names={"external_id": "transaction_id", "author": "name"},
               identifier_fields=tuple(f for f in ("crm_id", "email", "phone") if getattr(record, f)))


def parse_json(payload: Any) -> Parsed:
    """One record, an array of records, or ``{"transactions": [...]}``."""
    parsed = Parsed()
    prefix = ""  # paths in errors start at the payload's root: ``transactions[0].occurred_at``
    if isinstance(payload, dict) and isinstance(payload.get("transactions"), list):
        payload, prefix = payload["transactions"], "transactions"
    records = payload if isinstance(payload, list) else [payload]
    for n, raw in enumerate(records):
        _one(parsed, raw, index=parsed.next_index(), line=None,
             path=f"{prefix}[{n}]" if isinstance(payload, list) else None)
    return parsed


def _dialect(text: str) -> type[csv.Dialect]:
    """RFC 4180 (comma, ``""`` escaping a quote) unless the header row clearly separates its
    columns with ``;`` or a tab (European exports). Only the delimiter is guessed, from the
    header: sniffing quoting from one line, or from a sample cut mid-row, misreads ``""``."""
    try:
        header = next(csv.reader(io.StringIO(text[:4096])), [""])
    except csv.Error:
        return csv.excel  # parse_csv reports what is wrong with it, on its row
    if len(header) > 1:
        return csv.excel  # it splits on commas already
    line = header[0] if header else ""
    counts = {d: line.count(d) for d in ";\t"}
    delimiter = max(counts, key=counts.__getitem__)
    if not counts[delimiter]:
        return csv.excel
    return csv.excel_tab if delimiter == "\t" else _Semicolon


class _Semicolon(csv.excel):
    delimiter = ";"


def parse_csv(text: str) -> tuple[Parsed, list[str]]:
    """The rows of a CSV export (comma, semicolon or tab separated) and the ignored columns."""
    parsed = Parsed()
    reader = csv.reader(io.StringIO(text), _dialect(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        parsed.reject(parsed.next_index(), [FieldError(field="header", message="the CSV is empty")], line=1)
        return parsed, []
    missing = [c for c in ("type", "occurred_at") if c not in header]
    if missing:
        parsed.reject(parsed.next_index(), [FieldError(field=c, message="column missing from the header row")
                                            for c in missing], line=1)
        return parsed, []
    ignored = [h for h in header if h not in FIELDS or h == "items"]
    row_number = 1
    for row in reader:
        row_number += 1
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        index = parsed.next_index()
        if len(row) > len(header):
            parsed.reject(index, [FieldError(field="row", message=f"{len(row)} cells for {len(header)} columns")],
                          line=row_number)
            continue
        raw = {h: cell for h, cell in zip(header, row) if h in FIELDS and h != "items" and cell.strip() != ""}
        _one(parsed, raw, index=index, line=row_number, path=None)
    return parsed, ignored
