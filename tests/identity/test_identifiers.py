"""Identifier rules: normalization (property tests), strength, blocklist, caps, masking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from socialzone_identity.identifiers import InvalidIdentifier, Rules, mask, type_strength

RULES = Rules(region="GB", blocklist=["unknown", "test@test.com", "support@acme.com", "noreply@*"],
              caps={"email": 5}, default_cap=50, salt="s")

local_parts = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9._+-]{0,20}[a-zA-Z0-9])?", fullmatch=True).filter(
    lambda s: ".." not in s)
domains = st.from_regex(r"[a-zA-Z]{2,12}\.(com|net|org|io|pt|de)", fullmatch=True)
handles = st.from_regex(r"[A-Za-z0-9_]{1,15}", fullmatch=True)


@given(local_parts, domains)
def test_email_normalization_is_case_insensitive_and_idempotent(local, domain):
    text = f"{local}@{domain}"
    try:
        first = RULES.normalize("email", text)
    except InvalidIdentifier:
        return  # some generated local parts are not valid addresses: rejected, never half-kept
    assert first.value == first.value.lower()
    assert RULES.normalize("email", first.value) == first
    assert RULES.normalize("EMAIL", f"  {text.upper()} ") == first


@given(handles, st.sampled_from(["", "@"]), st.booleans())
def test_x_handles_ignore_at_sign_and_case(handle, prefix, upper):
    written = prefix + (handle.upper() if upper else handle)
    assert RULES.normalize("x_handle", written).value == handle.lower()


@given(st.integers(min_value=2_000_000_000, max_value=2_099_999_999))
def test_uk_numbers_written_nationally_or_internationally_are_one_e164_identifier(n):
    national = "0" + str(n)  # 020 London numbers
    try:
        e164 = RULES.normalize("phone", national)
    except InvalidIdentifier:
        return
    assert e164.value.startswith("+44")
    assert RULES.normalize("phone", e164.value) == e164
    spaced = f"+44 {str(n)[:2]} {str(n)[2:6]} {str(n)[6:]}"
    assert RULES.normalize("phone", spaced) == e164


@settings(max_examples=200)
@given(st.text(max_size=40))
def test_normalizers_never_crash_they_accept_or_reject(text):
    for kind in ("email", "phone", "x", "x_handle", "mastodon", "reddit", "crm:shop", "device", "facebook"):
        try:
            n = RULES.normalize(kind, text)
        except InvalidIdentifier:
            continue
        assert RULES.normalize(kind, n.value) == n  # whatever is accepted is a fixed point


def test_examples_of_each_type():
    assert RULES.normalize("mastodon", "@Ana@Mastodon.Social").value == "ana@mastodon.social"
    assert RULES.normalize("reddit", "u/Some_User").value == "some_user"
    assert RULES.normalize("x", "00123").value == "123"
    assert RULES.parse("crm:shop:C-1").type == "crm:shop"
    assert RULES.parse("x_handle:@Acme").value == "acme"
    with pytest.raises(InvalidIdentifier, match="X user id is numeric"):
        RULES.normalize("x", "acme")
    with pytest.raises(InvalidIdentifier, match="unknown identifier type"):
        RULES.normalize("myspace", "tom")
    with pytest.raises(InvalidIdentifier, match="type:value"):
        RULES.parse("justtext")


@pytest.mark.parametrize("kind,value", [("email", "test@test.com"), ("email", "SUPPORT@acme.com"),
                                        ("email", "noreply@shop.io"), ("x_handle", "unknown"), ("device", "unknown")])
def test_junk_values_are_never_identifiers(kind, value):
    with pytest.raises(InvalidIdentifier, match="blocklisted"):
        RULES.normalize(kind, value)


def test_strength_platform_ids_and_crm_ids_are_strong_contacts_only_when_vouched_for():
    assert type_strength("x") == type_strength("crm:shop") == type_strength("mastodon") == "strong"
    assert type_strength("x_handle") == type_strength("device") == type_strength("web_cookie") == "weak"
    assert type_strength("email") == "weak" and type_strength("email", vouched=True) == "strong"
    assert type_strength("phone", vouched=True) == "strong"


def test_caps_per_type_with_a_default():
    assert RULES.cap("email") == 5 and RULES.cap("device") == 50


def test_masking_hides_most_of_emails_and_phones_only():
    assert mask("email", "maria@acme.com") == "m***@acme.com"
    assert mask("phone", "+351912345678") == "+35********78"
    assert mask("x", "123") == "123"


def test_suppression_hash_is_salted_and_stable():
    n = RULES.normalize("email", "a@acme.com")
    assert RULES.suppression_hash(n) == RULES.suppression_hash(RULES.normalize("email", "A@ACME.COM"))
    assert Rules(salt="other").suppression_hash(n) != RULES.suppression_hash(n)
    assert "a@acme.com" not in RULES.suppression_hash(n)
