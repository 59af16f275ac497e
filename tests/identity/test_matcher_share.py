"""The matcher yields to attribution: a smaller share of the time while attribution has
interactions waiting (SOCIALZONE_MATCH_SHARE_WHILE_ATTRIBUTING)."""

from __future__ import annotations

from types import SimpleNamespace

from socialzone_common.worker import WorkerState
from socialzone_identity.service import RESOLUTION_GROUP, TIMELINE_GROUP, matcher_share
from socialzone_identity.settings import IdentitySettings


def runtime(**last_batches: int) -> SimpleNamespace:
    workers = [SimpleNamespace(spec=SimpleNamespace(group=group), state=WorkerState(last_batch=n))
               for group, n in last_batches.items()]
    return SimpleNamespace(settings=IdentitySettings(match_busy_share=0.3, match_share_while_attributing=0.04),
                           workers=workers)


def test_the_matcher_takes_its_share_when_attribution_is_caught_up():
    assert matcher_share(runtime(**{RESOLUTION_GROUP: 0, TIMELINE_GROUP: 0})) == 0.3


def test_the_matcher_takes_less_while_attribution_has_interactions_waiting():
    assert matcher_share(runtime(**{RESOLUTION_GROUP: 250, TIMELINE_GROUP: 0})) == 0.04


def test_other_consumers_being_busy_does_not_slow_the_matcher():
    assert matcher_share(runtime(**{RESOLUTION_GROUP: 0, TIMELINE_GROUP: 500})) == 0.3
