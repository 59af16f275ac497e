"""Normalizers: total, idempotent, and folding the differences people do not mean."""

from __future__ import annotations

from datetime import date

from hypothesis import example, given
from hypothesis import strategies as st

from socialzone_identity.matching import normalize as nz

TEXT = st.text(max_size=40)


@given(TEXT)
@example("0 ?")  # found by hypothesis: the blank before a query survived the first pass
@example("a://b://c/")
def test_every_normalizer_is_idempotent_and_total(text):
    for f in (nz.fold, nz.name, nz.postcode, nz.region, nz.country, nz.handle, nz.email, nz.phone,
              nz.avatar_url, nz.ssn):
        once = f(text)
        assert isinstance(once, str)
        assert f(once) == once, f.__name__


@given(TEXT)
def test_folded_text_is_plain_lower_case_ascii_words(text):
    folded = nz.fold(text)
    assert folded == folded.strip()
    assert "  " not in folded
    assert all(ch.isdigit() or ch == " " or ("a" <= ch <= "z") or not ch.isascii() for ch in folded)


def test_names_ignore_case_accents_and_punctuation():
    assert nz.name("  José-María ") == nz.name("jose maria") == "josemaria"
    assert nz.name("O'Brien") == nz.name("OBRIEN")
    assert nz.name("Müller") == "muller"
    assert nz.name("Straße") == "strasse"


def test_street_splits_the_house_number():
    assert nz.street("12 Stanley St., Miami") == ("12", "stanley st miami")
    assert nz.street("Stanley Street") == ("", "stanley street")


def test_handles_emails_phones_and_avatars_compare_in_canonical_form():
    assert nz.handle("@Acme_Fan") == nz.handle("https://x.com/acme_fan/") == "acme_fan"
    assert nz.email("J.Doe+shop@GoogleMail.com") == nz.email("jdoe@gmail.com")
    assert nz.email("not-an-email") == ""
    assert nz.phone("+44 20 7946 0958") == "442079460958"
    assert nz.phone("12") == ""
    assert nz.avatar_url("HTTPS://Pics.Example.com/a/b.jpg?size=48") == nz.avatar_url("http://pics.example.com/a/b.jpg")


@given(st.dates())
def test_dates_parse_from_iso_and_compact_forms(d):
    assert nz.parse_date(d.isoformat()) == d
    assert nz.parse_date(d.strftime("%Y%m%d")) == d if d.year >= 1000 else True


def test_impossible_or_malformed_dates_are_missing():
    assert nz.parse_date("19151131") is None
    assert nz.parse_date("1915") is None
    assert nz.parse_date(None) is None
    assert nz.parse_date(date(2000, 1, 2)) == date(2000, 1, 2)


def test_nickname_groups_link_diminutives():
    assert nz.nickname_groups("bill") & nz.nickname_groups("william")
    assert not nz.nickname_groups("bill") & nz.nickname_groups("robert")
