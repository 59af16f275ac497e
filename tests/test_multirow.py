"""Many rows in few statements (db.insert_rows / update_rows): every row lands, in chunks
that stay under the drivers' parameter limits, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from socialzone_common import db


@pytest.fixture(params=["sqlite", "postgresql"])
def connection(request, tmp_path):
    if request.param == "sqlite":
        engine = db.create_db_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    else:
        engine = create_engine(request.getfixturevalue("pg_url"))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS multirow_t"))
        conn.execute(text("CREATE TABLE multirow_t (id VARCHAR(20) PRIMARY KEY, n INTEGER, note VARCHAR(50))"))
    with engine.connect() as conn:
        yield conn
        conn.rollback()
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE multirow_t"))
    engine.dispose()


def mark(conn) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def test_rows_go_in_statements_of_at_most_the_chunk_and_under_the_parameter_limit():
    statements = list(db.multirow_statements("INSERT INTO t (a, b) VALUES", "(?, ?)", [(i, i) for i in range(1234)]))
    assert [len(p) // 2 for _s, p in statements] == [500, 500, 128, 64, 32, 8, 2]
    assert statements[0][0].count("(?, ?)") == 500 and statements[0][1][:4] == (0, 0, 1, 1)
    wide = list(db.multirow_statements("INSERT INTO t VALUES", "(" + ", ".join("?" * 100) + ")", [tuple(range(100))] * 700))
    assert all(len(p) <= 30_000 for _s, p in wide) and sum(len(p) for _s, p in wide) == 70_000
    assert list(db.multirow_statements("INSERT INTO t VALUES", "(?)", [])) == []


def test_statements_come_in_sizes_that_recur_so_their_compiled_form_is_reused():
    """Whole statements, then the rest in powers of two: every row once, in order."""
    whole = db.ROWS_PER_STATEMENT
    rows = [(n,) for n in range(2 * whole + 360)]
    statements = list(db.multirow_statements("INSERT INTO t (n) VALUES", "(?)", rows))
    assert [len(parameters) for _, parameters in statements] == [whole, whole, 256, 64, 32, 8]
    assert [n for _, parameters in statements for n in parameters] == [n for (n,) in rows]
    assert [len(p) for _, p in db.multirow_statements("INSERT INTO t (n) VALUES", "(?)", [(1,)] * 7)] == [4, 2, 1]
    assert list(db.multirow_statements("INSERT INTO t (n) VALUES", "(?)", [])) == []


def test_insert_then_update_many_rows(connection):
    m = mark(connection)
    db.insert_rows(connection, "INSERT INTO multirow_t (id, n, note) VALUES", f"({m}, {m}, {m})",
                   [(f"r{i}", i, None) for i in range(1203)])
    db.update_rows(connection, "multirow_t", "n = v.column2, note = v.column3", "id",
                   f"({m}, CAST({m} AS INTEGER), {m})", [(f"r{i}", -i, f"changed {i}") for i in range(0, 1203, 2)])
    rows = connection.execute(text("SELECT id, n, note FROM multirow_t")).all()
    assert len(rows) == 1203
    by_id = {r.id: r for r in rows}
    assert by_id["r0"].n == 0 and by_id["r0"].note == "changed 0"
    assert by_id["r1202"].n == -1202 and by_id["r1202"].note == "changed 1202"
    assert by_id["r1201"].n == 1201 and by_id["r1201"].note is None  # not in the update


def test_mappings_go_through_their_columns_types_as_a_core_insert_would(connection):
    from datetime import datetime, timezone
    from decimal import Decimal

    from sqlalchemy import JSON, Boolean, Column, Integer, MetaData, Numeric, String, Table, select

    table = Table("multirow_typed", MetaData(), Column("id", Integer, primary_key=True), Column("name", String(20)),
                  Column("at", db.UtcDateTime), Column("amount", Numeric(18, 4)), Column("flag", Boolean),
                  Column("doc", JSON))
    table.create(connection)
    at = datetime(2026, 12, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)
    rows = [{"id": i, "name": f"n{i}", "at": at, "amount": Decimal("19.99") * i, "flag": i % 2 == 0,
             "doc": {"i": i, "tags": ["a", "é"]} if i % 3 else None} for i in range(700)]
    db.insert_mappings(connection, table, rows)
    back = {r.id: r for r in connection.execute(select(table))}
    assert len(back) == 700
    for row in (rows[0], rows[1], rows[699]):
        got = back[row["id"]]
        assert (got.name, got.flag, got.doc) == (row["name"], row["flag"], row["doc"])
        assert Decimal(got.amount) == row["amount"]
        assert got.at.replace(tzinfo=timezone.utc) == at
    table.drop(connection)


def test_a_returning_insert_gives_back_the_rows_of_every_statement(connection):
    m = mark(connection)
    head, row = "INSERT INTO multirow_t (id, n, note) VALUES", f"({m}, {m}, {m})"
    db.insert_rows(connection, head, row, [("r5", 5, None), ("r700", 700, None)])
    returned = db.insert_rows(connection, head, row, [(f"r{i}", i, None) for i in range(1000)],
                              " ON CONFLICT DO NOTHING RETURNING id")
    assert sorted(r[0] for r in returned) == sorted(f"r{i}" for i in range(1000) if i not in (5, 700))
    assert db.insert_rows(connection, head, row, [("r1", 1, None)], " ON CONFLICT DO NOTHING") == []


def test_select_in_finds_the_rows_of_many_keys_by_one_column_or_a_row_value(connection):
    m = mark(connection)
    head, row = "INSERT INTO multirow_t (id, n, note) VALUES", f"({m}, {m}, {m})"
    db.insert_rows(connection, head, row, [(f"r{i}", i % 7, "odd" if i % 2 else "even") for i in range(900)])
    wanted = [(f"r{i}",) for i in range(0, 1800, 3)]  # 600 keys, half of them absent
    found = db.select_in(connection, "SELECT id FROM multirow_t", ["id"], wanted)
    assert sorted(r[0] for r in found) == sorted(f"r{i}" for i in range(0, 900, 3))
    pairs = [(f"r{i}", i % 7) for i in range(0, 900, 2)] + [("r1", 6)]  # the last one: no such row
    found = db.select_in(connection, "SELECT id FROM multirow_t", ["id", "n"], pairs,
                         where=f"note = {m}", params=("even",))
    assert sorted(r[0] for r in found) == sorted(f"r{i}" for i in range(0, 900, 2))
    assert db.select_in(connection, "SELECT id FROM multirow_t", ["id"], []) == []


def test_sqlite_datetimes_are_written_as_sqlalchemy_writes_them():
    """bind_processors swaps SQLite's DATETIME processor for a faster one: same text, always."""
    from datetime import date, datetime, timedelta, timezone

    from sqlalchemy import Column, Date, DateTime, MetaData, Table
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    table = Table("t", MetaData(), Column("at", DateTime(timezone=True)), Column("day", Date))
    [(_, fast), (_, day)] = db.bind_processors(dialect, table, ["at", "day"])
    reference = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    assert fast is not reference  # the swap happened (else this test proves nothing)
    zones = [timezone.utc, timezone(timedelta(hours=-5)), None]
    values = [datetime(2026, 12, 1, 9, 30, 0, 0, tzinfo=z) for z in zones] + [
        datetime(999, 1, 2, 3, 4, 5, 6), datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone.utc),
        date(2026, 12, 1), None]
    for value in values + values:  # the second time from what it remembered
        assert fast(value) == reference(value), value
    utc = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
    same_instant = utc.astimezone(timezone(timedelta(hours=1)))
    assert same_instant == utc and fast(utc) != fast(same_instant) == reference(same_instant)
    assert day(date(2026, 12, 1)) == Date().dialect_impl(dialect).bind_processor(dialect)(date(2026, 12, 1))
