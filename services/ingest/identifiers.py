"""Normalizing author identifiers the way identity types them: lower-case e-mail, E.164 phone,
handles without "@" and in lower case. A value that cannot be normalized is refused."""

from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email

# Handles are case-insensitive on these networks; numeric account ids are kept as they are.
# ``mastodon`` is an account too (``user@instance``, what the Mastodon connector sends): typed
# either way by a sender, the same account must give the same author key.
_HANDLE_TYPES = {"x_handle", "instagram_handle", "reddit", "mastodon", "mastodon_acct", "tiktok_handle",
                 "threads_handle"}


def normalize_identifier(type_: str, value: str, *, default_region: str | None = None) -> str:
    """The normalized value, or ValueError saying why it is not one."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if type_ == "email":
        try:
            checked = validate_email(value, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValueError(f"not an e-mail address: {exc}") from None
        return checked.normalized.lower()
    if type_ == "phone":
        try:
            number = phonenumbers.parse(value, None if value.startswith("+") else default_region)
        except phonenumbers.NumberParseException as exc:
            hint = "" if value.startswith("+") or default_region else " (write it with +country code)"
            raise ValueError(f"not a phone number{hint}: {exc}") from None
        if not phonenumbers.is_possible_number(number):
            raise ValueError("not a possible phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if type_ in _HANDLE_TYPES:
        handle = value.removeprefix("@").lower()
        if not handle:
            raise ValueError("must not be empty")
        return handle
    return value
