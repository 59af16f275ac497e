"""Attributions arrive by the thousand (one per interaction): ingest's consumer takes a
polled batch in one transaction, with the same outcome as one event at a time."""

from __future__ import annotations

import pytest

from socialzone_common.bus import OutgoingMessage
from socialzone_common.events.common import Interaction
from socialzone_common.events.identity import CustomerMerged, InteractionAttributed

from tests.ingest.conftest import WRITER, outbox_events, serving, stored, wait_for
from tests.ingest.test_erasure import item, request_erasure


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_batch_of_attributions_keys_each_interaction_and_purges_an_erased_customers_at_once(
        ingest_settings, backend, request, caplog):
    """On both stores: the batch statement (UPDATE ... FROM (VALUES ...)) types its untyped
    parameters differently on each."""
    settings = ingest_settings
    if backend == "postgres":
        pg = request.getfixturevalue("pg_settings")
        settings = settings.model_copy(update={"database_url": pg.database_url,
                                               "database_schema_prefix": pg.database_schema_prefix})
    async with serving(settings) as client:
        await _attributions_in_one_batch(client, caplog)


async def _attributions_in_one_batch(client, caplog) -> None:
    recorded = (await client.post("/ingest/v1/interactions", headers=WRITER, json=[
        item(20 + n, str(700 + n), f"post {n}") for n in range(5)])).json()
    ids = [r["interaction_id"] for r in recorded["results"]]
    await request_erasure(client, "cus_gone")
    await wait_for(lambda: outbox_events(client, "ingest.erasure.completed"))
    interactions = {r.id: Interaction.model_validate_json(r.document) for r in stored(client)}
    worker = next(w for w in client.runtime.workers if w.spec.group == "ingest-attribution")

    def attributed(n: int, customer_id: str) -> OutgoingMessage:
        event = InteractionAttributed(customer_id=customer_id, interaction=interactions[ids[n]])
        return OutgoingMessage("zone.interactions", event.to_envelope(source="socialzone/identity"))

    batch = [attributed(0, "cus_old"), attributed(1, "cus_keep"), attributed(2, "cus_gone"),
             attributed(3, "cus_old"), attributed(4, "cus_other")]
    await client.host_app.state.bus.publish(batch)
    await client.host_app.state.bus.publish(batch[:2])  # redelivered: changes nothing
    await wait_for(lambda: worker.state.handled + worker.state.duplicates >= 7)

    by_id = {r.id: r for r in stored(client)}
    assert [by_id[i].customer_id for i in ids] == ["cus_old", "cus_keep", "cus_gone", "cus_old", "cus_other"]
    assert by_id[ids[2]].erased_at is not None  # attributed after the erasure: purged as it arrived
    assert all(by_id[i].erased_at is None for i in ids if i != ids[2])
    assert (worker.state.handled, worker.state.duplicates, worker.state.dead_lettered) == (5, 2, 0)

    merge = CustomerMerged(survivor_id="cus_keep", merged_id="cus_old", rule="strong_identifier")
    await client.host_app.state.bus.publish([
        OutgoingMessage("zone.customers", merge.to_envelope(source="socialzone/identity")), attributed(4, "cus_other")])
    await wait_for(lambda: worker.state.handled >= 6)
    assert [r.customer_id for r in sorted(stored(client), key=lambda r: ids.index(r.id))] == \
        ["cus_keep", "cus_keep", "cus_gone", "cus_keep", "cus_other"]
    # each batch went through the batch handler, not the one-at-a-time fallback
    assert not [r for r in caplog.records if "one event at a time" in r.getMessage()]
