"""Per-field reconciliation of the profile: most trusted source first, then most recent."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, strategies as st

from socialzone_identity.profile import merge_profiles, reconcile

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
observations = st.lists(st.tuples(st.sampled_from(["social", "verified", "crm", "agent"]),
                                  st.integers(min_value=0, max_value=10_000),
                                  st.sampled_from(["Lisbon", "Porto", "Faro", "Braga"])),
                        min_size=1, max_size=8, unique_by=lambda o: o[1])


def _fold(items):
    profile = None
    for kind, minute, city in items:
        profile, _ = reconcile(profile, {"city": city}, kind=kind, at=T0 + timedelta(minutes=minute), origin="c")
    return profile


@given(observations, st.randoms())
def test_the_result_does_not_depend_on_the_order_observations_arrive_in(items, rnd):
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert _fold(items)["fields"]["city"]["v"] == _fold(shuffled)["fields"]["city"]["v"]


@given(observations)
def test_the_most_trusted_then_most_recent_value_wins(items):
    rank = {"social": 1, "verified": 2, "crm": 3, "agent": 4}
    expected = max(items, key=lambda o: (rank[o[0]], o[1]))[2]
    assert _fold(items)["fields"]["city"]["v"] == expected


@given(observations, observations)
def test_merging_two_profiles_is_the_same_as_seeing_all_their_observations(a, b):
    minutes = {o[1] for o in a}
    b = [o for o in b if o[1] not in minutes]
    merged = merge_profiles(_fold(a), _fold(b) if b else None)
    assert merged["fields"]["city"]["v"] == _fold(a + b)["fields"]["city"]["v"]


def test_a_crm_address_is_not_overwritten_by_a_later_social_profile():
    profile, _ = reconcile(None, {"city": "Lisbon"}, kind="crm", at=T0, origin="c")
    profile, _ = reconcile(profile, {"city": "Mars"}, kind="social", at=T0 + timedelta(days=1), origin="c")
    assert profile["fields"]["city"]["v"] == "Lisbon" and profile["fields"]["city"]["src"] == "crm"
    assert "Mars" in profile["locations"]  # where the customer has said they are, for agents
