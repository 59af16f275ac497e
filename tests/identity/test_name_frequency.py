"""The matcher weighs a shared name by how common it is among the customers it knows."""

from __future__ import annotations

from sqlalchemy import select

from socialzone_identity.models import Customer, MatchSuggestion
from tests.identity.conftest import Identity
from tests.identity.factory import recorded


def _suggested_names(store: Identity) -> list[tuple[str, str]]:
    with store.sessions() as session:
        names = dict(session.execute(select(Customer.id, Customer.display_name)).all())
        rows = session.execute(select(MatchSuggestion)).scalars().all()
    return sorted(tuple(sorted((names[s.customer_a], names[s.customer_b]))) for s in rows)


def test_namesakes_of_a_common_name_are_not_suggested_while_a_rare_pair_is(identity_settings, tmp_path):
    _crowd_and_rare_pair(Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "names"}), batched=True))


def test_on_postgresql_the_name_frequency_counts_the_same(pg_settings):
    from socialzone_identity.settings import IdentitySettings

    _crowd_and_rare_pair(Identity(IdentitySettings(**pg_settings.model_dump()), batched=True))


def _crowd_and_rare_pair(store: Identity) -> None:
    try:
        # 40 name-only "Ana Silva" authors among 42 people with a name
        crowd = [recorded(("x", str(1000 + i)), display_name="Ana Silva") for i in range(40)]
        rare = [recorded(("x", str(2000 + i)), display_name="Zbigniew Wojciechowski") for i in range(2)]
        store.ingest(*crowd[:20], *rare, *crowd[20:])
        assert store.match() == 42
        assert _suggested_names(store) == [("Zbigniew Wojciechowski", "Zbigniew Wojciechowski")]
    finally:
        store.engine.dispose()


def test_the_first_two_namesakes_are_suggested(identity_settings, tmp_path):
    store = Identity(identity_settings.model_copy(update={"data_dir": tmp_path / "pair"}), batched=True)
    try:
        store.ingest(recorded(("x", "3001"), display_name="Ana Silva"))
        store.match()
        store.ingest(recorded(("x", "3002"), display_name="Ana Silva"))
        store.match()
        assert _suggested_names(store) == [("Ana Silva", "Ana Silva")]
    finally:
        store.engine.dispose()
