"""CRM transactions: JSON records and CSV uploads, with row-numbered errors; valid rows are
accepted, invalid ones rejected, nothing half-written."""

from __future__ import annotations

from decimal import Decimal

from tests.ingest.conftest import WRITER, outbox_events, stored

EXPORT = """\
transaction_id,type,occurred_at,amount,currency,email,phone,crm_id,name,given_name,surname,city,country,text,loyalty_tier
T-1001,order,2026-11-02T10:00:00Z,89.50,EUR,Bugs@Warren.example,,C-1,Bugs B.,Bugs,Bunny,Albuquerque,US,two carrots crates,gold
T-1002,refund,2026-11-03T12:30:00+01:00,-89.50,EUR,bugs@warren.example,,C-1,,,,,,crate arrived empty,gold
T-1003,order,2026-11-03T13:00:00Z,twelve,EUR,daffy@pond.example,,,,,,,,,
T-1004,call,2026-11-04T08:45:00Z,,,,+1 505 555 0142,,,,,,,asked about delivery times,
T-1005,order,2026-11-04T09:00:00Z,12.00,EUR,,,,,,,,,,
T-1006,ticket,not a date,,,elmer@fudd.example,,,,,,,,,
T-1007,order,2026-11-05T09:00:00Z,12.00,,elmer@fudd.example,,,,,,,,,
"""


async def test_a_csv_export_records_valid_rows_and_names_the_row_of_each_bad_one(client):
    response = await client.post("/ingest/v1/transactions", content=EXPORT.encode(),
                                 headers={**WRITER, "Content-Type": "text/csv"})

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 4)
    rejected = {r["line"]: r["errors"][0]["field"] for r in body["results"] if r["status"] == "rejected"}
    assert rejected == {4: "amount", 6: "crm_id|email|phone", 7: "occurred_at", 8: "currency"}
    assert response.headers["x-ignored-columns"] == "loyalty_tier"

    events = [p.interaction for _, p in outbox_events(client, "ingest.interaction.recorded")]
    order, refund, call = events
    assert (order.kind, order.transaction.type, order.transaction.amount, order.transaction.currency) == (
        "transaction", "order", Decimal("89.50"), "EUR")
    assert [(i.type, i.value) for i in order.author.identifiers] == [("crm", "C-1"), ("email", "bugs@warren.example")]
    assert order.author.attributes.given_name == "Bugs" and order.author.attributes.country == "US"
    assert refund.transaction.amount == Decimal("-89.50")
    assert call.kind == "call" and call.transaction.amount is None
    assert call.author.identifiers[0].value == "+15055550142"
    assert order.author.key == refund.author.key  # the same customer: one partition, in order


async def test_the_same_export_uploaded_twice_records_nothing_new(client):
    headers = {**WRITER, "Content-Type": "text/csv"}
    await client.post("/ingest/v1/transactions", content=EXPORT.encode(), headers=headers)
    again = await client.post("/ingest/v1/transactions", content=EXPORT.encode(), headers=headers)
    assert again.json()["duplicates"] == 3 and again.json()["accepted"] == 0
    assert len(outbox_events(client, "ingest.interaction.recorded")) == 3


async def test_a_csv_file_can_be_uploaded_as_multipart_form_data(client):
    semicolons = "transaction_id;type;occurred_at;amount;currency;crm_id\nT-9;order;2026-11-06T10:00:00Z;5.25;GBP;C-9\n"
    response = await client.post("/ingest/v1/transactions", headers=WRITER,
                                 files={"file": ("export.csv", semicolons.encode(), "text/csv")})
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1


async def test_a_csv_whose_every_row_is_invalid_is_a_422_naming_rows(client):
    bad = "type,occurred_at,email\norder,2026-11-06T10:00:00Z,not-an-email\ncall,yesterday,a@b.example\n"
    response = await client.post("/ingest/v1/transactions", content=bad.encode(),
                                 headers={**WRITER, "Content-Type": "text/csv"})
    assert response.status_code == 422
    problem = response.json()
    assert [(e["field"], e["row"]) for e in problem["errors"]] == [("email", 2), ("occurred_at", 3)]
    assert problem["detail"].startswith("email: row 2:")
    assert stored(client) == []


async def test_a_csv_without_the_required_columns_is_a_422_naming_them(client):
    response = await client.post("/ingest/v1/transactions", content=b"amount,email\n1,a@b.example\n",
                                 headers={**WRITER, "Content-Type": "text/csv"})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["type", "occurred_at"]


async def test_json_transactions_take_the_same_fields_and_items(client):
    records = {"transactions": [
        {"transaction_id": "T-2001", "type": "order", "occurred_at": "2026-11-07T10:00:00Z", "amount": 30,
         "currency": "EUR", "crm_id": "C-5", "items": [{"sku": "B-1", "name": "Birdseed", "quantity": 3,
                                                         "unit_price": "10.00"}]},
        {"transaction_id": "T-2002", "type": "teleport", "occurred_at": "2026-11-07T10:00:00Z", "crm_id": "C-5"},
    ]}
    response = await client.post("/ingest/v1/transactions", json=records, headers=WRITER)
    assert response.status_code == 202
    results = response.json()["results"]
    assert results[0]["status"] == "accepted"
    assert results[1]["errors"][0]["field"] == "transactions[1].type"  # from the payload root
    order = outbox_events(client, "ingest.interaction.recorded")[0][1].interaction
    assert order.transaction.items[0].quantity == 3 and order.transaction.amount == Decimal("30")


async def test_a_csv_that_is_not_utf8_is_a_422(client):
    response = await client.post("/ingest/v1/transactions", content="type,occurred_at\nordér,x\n".encode("utf-16"),
                                 headers={**WRITER, "Content-Type": "text/csv"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body"


CSV = {**WRITER, "Content-Type": "text/csv"}


async def test_a_csv_with_rfc_4180_escaped_quotes_keeps_them_in_the_cell(client):
    body = ('type,occurred_at,email,text\n'
            'order,2026-11-02T10:00:00Z,a@example.com,"He said ""late"", again"\n'
            'call,2026-11-02T11:00:00Z,a@example.com,"two\nlines, ""quoted"""\n').encode()
    response = await client.post("/ingest/v1/transactions", content=body, headers=CSV)
    assert response.status_code == 202, response.text
    texts = [p.interaction.text for _, p in outbox_events(client, "ingest.interaction.recorded")]
    assert texts == ['He said "late", again', 'two\nlines, "quoted"']


async def test_a_semicolon_or_tab_separated_export_is_still_read(client):
    semicolons = ('transaction_id;type;occurred_at;amount;currency;email;text\n'
                  'S-1;order;2026-11-02T10:00:00Z;10.00;EUR;a@example.com;"a ""quoted""; note"\n')
    tabs = 'transaction_id\ttype\toccurred_at\temail\nS-2\tcall\t2026-11-02T11:00:00Z\ta@example.com\n'
    first = await client.post("/ingest/v1/transactions", content=semicolons.encode(), headers=CSV)
    second = await client.post("/ingest/v1/transactions", content=tabs.encode(), headers=CSV)
    assert first.json()["accepted"] == second.json()["accepted"] == 1
    order = outbox_events(client, "ingest.interaction.recorded")[0][1].interaction
    assert (order.text, order.transaction.amount) == ('a "quoted"; note', Decimal("10"))


async def test_errors_in_wrapped_json_transactions_are_named_from_the_payload_root(client):
    response = await client.post("/ingest/v1/transactions", headers=WRITER, json={"transactions": [
        {"type": "order", "occurred_at": "nope", "email": "a@example.com"}]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "transactions[0].occurred_at"


async def test_rows_without_transaction_id_are_told_apart_by_their_transaction(client):
    body = ('type,occurred_at,amount,currency,crm_id\n'
            'order,2026-11-02T00:00:00Z,10.00,EUR,C-1\n'
            'refund,2026-11-02T00:00:00Z,-10.00,EUR,C-1\n'
            'order,2026-11-02T00:00:00Z,25.00,EUR,C-1\n').encode()
    response = await client.post("/ingest/v1/transactions", content=body, headers=CSV)
    assert response.json()["accepted"] == 3
    # the same order again, its amount written otherwise and its time in another zone: one record
    again = b'type,occurred_at,amount,currency,crm_id\norder,2026-11-02T01:00:00+01:00,10.0,eur,C-1\n'
    response = await client.post("/ingest/v1/transactions", content=again, headers=CSV)
    assert response.json()["duplicates"] == 1 and len(stored(client)) == 3
