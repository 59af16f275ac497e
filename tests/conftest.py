"""Shared fixtures. Tests need no server except where they say so: the PostgreSQL
tests use the real server (127.0.0.1:5432 here; ``SOCIALZONE_TEST_DATABASE_URL``
elsewhere) and the Kafka tests start the Tansu broker (tests/kafka_broker.py)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text

from socialzone_common.settings import ApiKey, ServiceSettings

pytest_plugins = ["tests.kafka_broker"]

import os  # noqa: E402

PG_URL = os.environ.get("SOCIALZONE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

# Keys the API tests use: one per kind of caller.
TEST_KEYS = {
    "admin": ("test-admin-key", ["admin"]),
    "care_agent": ("test-care-key", ["care:write", "identity:read"]),
    "analyst": ("test-analyst-key", ["insights:read", "identity:read"]),
}


def bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TEST_KEYS[who][0]}"}


@pytest.fixture
def settings(tmp_path) -> ServiceSettings:
    """Embedded defaults in a throw-away data folder, with the test keys."""
    return ServiceSettings(
        environment="test", data_dir=tmp_path,
        api_keys=[ApiKey(name=name, key=key, scopes=scopes) for name, (key, scopes) in TEST_KEYS.items()],
        relay_poll_interval_s=0.05, log_json=False,
    )


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The real PostgreSQL server. Unreachable is a failure that says what to start, not a skip."""
    engine = create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing here
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_URL} ({type(exc).__name__}: {exc}). Start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or point "
            "SOCIALZONE_TEST_DATABASE_URL at a server.", pytrace=False)
    finally:
        engine.dispose()
    return PG_URL


@pytest.fixture
def pg_settings(settings, pg_url) -> ServiceSettings:
    """Settings on PostgreSQL, every service in schemas of its own for this test (dropped after)."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    yield settings.model_copy(update={"database_url": pg_url, "database_schema_prefix": prefix})
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        schemas = conn.execute(text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"),
                               {"p": prefix + "%"}).scalars().all()
        for schema in schemas:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()
