"""What every client of every service sees at the HTTP edge: keys and scopes, problem
details, health, readiness and metrics. Real HTTP through the all-in-one ASGI app."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, Query
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import create_engine
from sqlmodel import Field as Column
from sqlmodel import select
from starlette.routing import Mount

from socialzone_common.auth import Principal, digest, ensure_local_admin_key
from socialzone_common.db import new_table_base
from socialzone_common.deps import SessionDep, require
from socialzone_common.errors import NotFound
from socialzone_common.service import ServiceSpec, load_services
from socialzone_common.settings import ApiKey
from socialzone_common.web import build_host_app
from tests.conftest import bearer

PROBLEM = "application/problem+json"
SERVICES = sorted(load_services())

# --- a test-only service with the kinds of routes real services will have ---

WidgetTable = new_table_base("WidgetTable")


class Widget(WidgetTable, table=True):
    __tablename__ = "widgets"
    id: int | None = Column(default=None, primary_key=True)
    name: str


class Identifier(BaseModel):
    kind: str
    value: str = Field(min_length=1)


class Author(BaseModel):
    identifiers: list[Identifier]


class WidgetIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    author: Author


def widget_router(*, open_route: bool = False) -> APIRouter:
    router = APIRouter()

    @router.post("/widgets", status_code=201, dependencies=[require("widgets:write")])
    def create_widget(body: WidgetIn, session: SessionDep) -> dict:
        widget = Widget(name=body.name)
        session.add(widget)
        session.commit()
        return {"id": widget.id, "name": widget.name}

    @router.get("/widgets", dependencies=[require("widgets:read")])
    def list_widgets(session: SessionDep, limit: int = Query(10, ge=1, le=100)) -> list[dict]:
        return [{"id": w.id, "name": w.name} for w in session.exec(select(Widget).limit(limit))]

    @router.get("/widgets/{widget_id}", dependencies=[require("widgets:read")])
    def get_widget(widget_id: int, session: SessionDep) -> dict:
        widget = session.get(Widget, widget_id)
        if widget is None:
            raise NotFound(f"no widget {widget_id}")
        return {"id": widget.id, "name": widget.name}

    @router.get("/boom", dependencies=[require("widgets:read")])
    def boom() -> dict:
        raise RuntimeError("password=hunter2 leaked from the database driver")

    if open_route:
        @router.get("/forgot-auth")
        def forgot_auth() -> dict:
            return {"data": "for anyone"}

    return router


def widget_spec(tmp_path: Path, *, open_route: bool = False) -> ServiceSpec:
    """The spec of the test service, with a real Alembic history that creates its table."""
    migrations = tmp_path / "widget_migrations"
    (migrations / "versions").mkdir(parents=True)
    (migrations / "env.py").write_text(
        "from sqlalchemy import MetaData\n"
        "from socialzone_common.db import run_alembic_env\n"
        "run_alembic_env(MetaData())\n")
    (migrations / "versions" / "0001_widgets.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n"
        "revision = 'widgets_0001'\ndown_revision = None\n"
        "def upgrade():\n"
        "    op.create_table('widgets', sa.Column('id', sa.Integer(), primary_key=True),\n"
        "                    sa.Column('name', sa.String(100), nullable=False))\n")
    return ServiceSpec(name="widgets", title="Widgets", description="test only", migrations=migrations,
                       metadata=WidgetTable.metadata, routers=lambda: [widget_router(open_route=open_route)])


@asynccontextmanager
async def serving(host):
    """The host app started (lifespan) behind a real HTTP client."""
    async with host.router.lifespan_context(host):
        transport = httpx.ASGITransport(app=host, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def all_services_host(settings):
    specs = list(load_services().values())
    return build_host_app(specs, settings=settings, service_settings={s.name: settings for s in specs})


def v1_requests(host) -> list[tuple[str, str]]:
    """(method, URL) of every /v1 route of every mounted service, path parameters filled in."""
    found = []
    for mount in host.routes:
        if not isinstance(mount, Mount):
            continue
        for route in iter_route_contexts(mount.app.routes):
            if isinstance(route.original_route, APIRoute) and route.path.startswith("/v1"):
                url = mount.path + re.sub(r"\{[^}]+\}", "1", route.path)
                found += [(method, url) for method in sorted(route.methods)]
    return found


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"]
    return body


# --- auth ---

async def test_every_v1_route_of_every_service_rejects_a_request_without_a_key(settings):
    host = all_services_host(settings)
    requests = v1_requests(host)
    assert {url for _, url in requests} >= {f"/{name}/v1/status" for name in SERVICES}
    async with serving(host) as client:
        for method, url in requests:
            response = await client.request(method, url)
            assert_problem(response, 401)
            assert response.headers["www-authenticate"] == "Bearer", (method, url)


async def test_every_v1_route_of_every_service_rejects_an_unknown_key(settings):
    host = all_services_host(settings)
    async with serving(host) as client:
        for method, url in v1_requests(host):
            response = await client.request(method, url, headers={"Authorization": "Bearer not-a-key"})
            assert_problem(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")


async def test_the_route_check_catches_a_v1_route_that_forgot_its_key(settings, tmp_path):
    host = build_host_app([widget_spec(tmp_path, open_route=True)], settings=settings,
                          service_settings={"widgets": settings})
    async with serving(host) as client:
        open_routes = [(m, url) for m, url in v1_requests(host)
                       if (await client.request(m, url)).status_code != 401]
    assert open_routes == [("GET", "/widgets/v1/forgot-auth")]


def test_every_v1_operation_documents_bearer_security_in_openapi(settings):
    host = all_services_host(settings)
    for mount in (r for r in host.routes if isinstance(r, Mount)):
        document = mount.app.openapi()
        assert "HTTPBearer" in document["components"]["securitySchemes"]
        for path, operations in document["paths"].items():
            if path.startswith("/v1"):
                for method, operation in operations.items():
                    assert operation.get("security"), f"{mount.path}{path} {method} has no security"


async def test_a_key_without_the_scope_is_forbidden_and_told_which_scope(settings):
    async with serving(all_services_host(settings)) as client:
        response = await client.get("/care/v1/status", headers=bearer("analyst"))
    body = assert_problem(response, 403)
    assert "care:read" in body["detail"]
    assert body["required_scope"] == "care:read"


async def test_a_key_with_the_scope_gets_the_data(settings):
    async with serving(all_services_host(settings)) as client:
        response = await client.get("/insights/v1/status", headers=bearer("analyst"))
    assert response.status_code == 200
    assert response.json()["service"] == "insights"


async def test_write_scope_implies_read_of_the_same_department_only(settings):
    async with serving(all_services_host(settings)) as client:
        care = await client.get("/care/v1/status", headers=bearer("care_agent"))
        sales = await client.get("/sales/v1/status", headers=bearer("care_agent"))
    assert care.status_code == 200
    assert_problem(sales, 403)


def test_write_scope_does_not_imply_special_scopes():
    writer = Principal("writer", frozenset({"identity:write"}))
    assert writer.allows("identity:read")
    assert not writer.allows("identity:pii")
    assert not writer.allows("care:read")


async def test_admin_key_reaches_every_service(settings):
    async with serving(all_services_host(settings)) as client:
        for name in SERVICES:
            response = await client.get(f"/{name}/v1/status", headers=bearer("admin"))
            assert response.status_code == 200, (name, response.text)


async def test_admin_key_from_settings_reaches_every_service(settings):
    settings = settings.model_copy(update={"admin_key": SecretStr("operator-secret"), "api_keys": []})
    async with serving(all_services_host(settings)) as client:
        for name in SERVICES:
            response = await client.get(f"/{name}/v1/status", headers={"Authorization": "Bearer operator-secret"})
            assert response.status_code == 200, (name, response.text)
        assert (await client.get("/care/v1/status", headers=bearer("admin"))).status_code == 401


async def test_admin_key_from_the_data_folder_file_reaches_every_service(settings):
    settings = settings.model_copy(update={"api_keys": []})
    path, created = ensure_local_admin_key(settings)
    assert created and path == settings.data_dir / "admin.key"
    assert path.stat().st_mode & 0o777 == 0o600
    key = path.read_text().strip()
    async with serving(all_services_host(settings)) as client:
        for name in SERVICES:
            response = await client.get(f"/{name}/v1/status", headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200, (name, response.text)


async def test_a_key_configured_by_its_sha256_digest_works(settings):
    settings = settings.model_copy(update={"api_keys": [
        ApiKey(name="ops", sha256=digest("ops-key").upper(), scopes=["sales:read"])]})
    async with serving(all_services_host(settings)) as client:
        allowed = await client.get("/sales/v1/status", headers={"Authorization": "Bearer ops-key"})
        forbidden = await client.get("/care/v1/status", headers={"Authorization": "Bearer ops-key"})
        wrong = await client.get("/sales/v1/status", headers={"Authorization": f"Bearer {digest('ops-key')}"})
    assert allowed.status_code == 200
    assert_problem(forbidden, 403)
    assert_problem(wrong, 401)  # the digest itself is not a key


async def test_a_non_bearer_authorization_is_refused(settings):
    async with serving(all_services_host(settings)) as client:
        response = await client.get("/care/v1/status", headers={"Authorization": "Basic dGVzdDp0ZXN0"})
    assert_problem(response, 401)


# --- problem details ---

async def test_unknown_paths_are_problem_documents(settings):
    async with serving(all_services_host(settings)) as client:
        outside = await client.get("/no-such-service/v1/things")
        inside = await client.get("/care/v1/no-such-thing")
    assert_problem(outside, 404)
    assert_problem(inside, 404)


@pytest.fixture
def widgets_host(settings, tmp_path):
    settings = settings.model_copy(update={"api_keys": [
        *settings.api_keys, ApiKey(name="maker", key="maker-key", scopes=["widgets:write"])]})
    return build_host_app([widget_spec(tmp_path)], settings=settings, service_settings={"widgets": settings})


MAKER = {"Authorization": "Bearer maker-key"}


def count_widgets(host) -> int:
    with host.state.runtimes["widgets"].sessions() as session:
        return len(session.exec(select(Widget)).all())


async def test_invalid_body_names_the_nested_field_and_creates_nothing(widgets_host):
    bad = {"name": "gizmo", "author": {"identifiers": [{"kind": "email", "value": ""}]}}
    async with serving(widgets_host) as client:
        response = await client.post("/widgets/v1/widgets", json=bad, headers=MAKER)
        body = assert_problem(response, 422)
        assert body["detail"].startswith("author.identifiers[0].value: ")
        assert body["errors"][0]["field"] == "author.identifiers[0].value"
        assert count_widgets(widgets_host) == 0
        good = await client.post("/widgets/v1/widgets", headers=MAKER,
                                 json={**bad, "author": {"identifiers": [{"kind": "email", "value": "a@b"}]}})
        assert good.status_code == 201
        assert count_widgets(widgets_host) == 1


async def test_every_invalid_field_is_listed(widgets_host):
    async with serving(widgets_host) as client:
        response = await client.post("/widgets/v1/widgets", headers=MAKER,
                                     json={"name": "", "author": {"identifiers": [{"value": "x"}]}})
    fields = {e["field"] for e in assert_problem(response, 422)["errors"]}
    assert fields == {"name", "author.identifiers[0].kind"}


async def test_malformed_json_is_blamed_on_the_body(widgets_host):
    async with serving(widgets_host) as client:
        response = await client.post("/widgets/v1/widgets", content=b'{"name": ', headers={
            **MAKER, "Content-Type": "application/json"})
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "body"
    assert body["detail"].startswith("body: ")
    assert count_widgets(widgets_host) == 0


async def test_invalid_query_and_path_parameters_are_named(widgets_host):
    async with serving(widgets_host) as client:
        query = await client.get("/widgets/v1/widgets?limit=0", headers=bearer("admin"))
        path = await client.get("/widgets/v1/widgets/not-a-number", headers=bearer("admin"))
    assert assert_problem(query, 422)["errors"][0]["field"] == "limit"
    assert assert_problem(query, 422)["detail"].startswith("limit: ")
    assert assert_problem(path, 422)["errors"][0]["field"] == "widget_id"


async def test_a_missing_resource_is_a_404_problem_with_its_detail(widgets_host):
    async with serving(widgets_host) as client:
        response = await client.get("/widgets/v1/widgets/42", headers=bearer("admin"))
    body = assert_problem(response, 404)
    assert body["detail"] == "no widget 42"
    assert body["instance"] == "/widgets/v1/widgets/42"


async def test_an_unexpected_error_is_a_500_problem_that_leaks_nothing(widgets_host):
    async with serving(widgets_host) as client:
        response = await client.get("/widgets/v1/boom", headers=bearer("admin"))
        after = await client.get("/widgets/healthz")
    body = assert_problem(response, 500)
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert body["title"] == "Internal server error"
    assert after.status_code == 200  # the service goes on


# --- health, readiness, metrics ---

async def readiness(client: httpx.AsyncClient, path: str, timeout: float = 60.0) -> httpx.Response:
    """/readyz (of a service or of the host) once every warm-up is over."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get(path)
        checks = response.json()["checks"]
        warming = any(c.get("warm_up") == "warming up" for c in [checks, *checks.values()] if isinstance(c, dict))
        if not warming or asyncio.get_running_loop().time() > deadline:
            return response
        await asyncio.sleep(0.05)


async def test_every_service_is_live_and_ready(settings):
    async with serving(all_services_host(settings)) as client:
        for name in SERVICES:
            live = await client.get(f"/{name}/healthz")
            ready = await readiness(client, f"/{name}/readyz")
            assert live.status_code == 200 and live.json()["service"] == name
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["database"] == "ok"
            assert ready.json()["checks"]["bus"] == "ok"


async def test_a_service_is_not_ready_until_its_warm_up_is_done(settings, tmp_path):
    loaded = threading.Event()
    spec = dataclasses.replace(widget_spec(tmp_path), warm_up=lambda runtime: loaded.wait(30))
    host = build_host_app([spec], settings=settings)
    async with serving(host) as client:
        warming = await client.get("/widgets/readyz")
        overall = await client.get("/readyz")
        served = await client.get("/widgets/healthz")
        loaded.set()
        ready = await readiness(client, "/widgets/readyz")
    assert warming.status_code == 503
    assert warming.json()["checks"]["warm_up"] == "warming up"
    assert overall.status_code == 503
    assert served.status_code == 200  # alive meanwhile: only readiness waits
    assert ready.status_code == 200 and ready.json()["checks"]["warm_up"] == "ok"


async def test_a_failed_warm_up_keeps_the_service_not_ready_and_says_why(settings, tmp_path):
    def broken(runtime):
        raise FileNotFoundError("model file missing")

    host = build_host_app([dataclasses.replace(widget_spec(tmp_path), warm_up=broken)], settings=settings)
    async with serving(host) as client:
        ready = await readiness(client, "/widgets/readyz")
        api = await client.get("/widgets/v1/widgets/42", headers=bearer("admin"))
    assert ready.status_code == 503
    assert ready.json()["checks"]["warm_up"] == "failed: FileNotFoundError"
    assert api.status_code == 404  # the API still answers what it can


async def test_a_service_whose_database_is_unreachable_is_not_ready(settings, tmp_path, monkeypatch):
    host = all_services_host(settings)
    async with serving(host) as client:
        with monkeypatch.context() as patch:
            patch.setattr(host.state.runtimes["care"], "engine",
                          create_engine(f"sqlite:///{tmp_path / 'no-such-folder' / 'care.db'}"))
            care = await client.get("/care/readyz")
            sales = await client.get("/sales/readyz")
            overall = await client.get("/readyz")
            live = await client.get("/care/healthz")
        recovered = await client.get("/care/readyz")
    assert care.status_code == 503
    assert care.json()["checks"]["database"].startswith("unreachable")
    assert care.json()["checks"]["bus"] == "ok"
    assert sales.status_code == 200
    assert overall.status_code == 503
    assert overall.json()["checks"]["care"]["database"].startswith("unreachable")
    assert overall.json()["checks"]["sales"] == {"database": "ok", "bus": "ok"}
    assert live.status_code == 200  # liveness checks only the process
    assert recovered.status_code == 200


async def test_every_service_is_not_ready_when_the_bus_is_unreachable(settings, monkeypatch):
    host = all_services_host(settings)

    async def unreachable() -> None:
        raise ConnectionError("bus down")

    async with serving(host) as client:
        with monkeypatch.context() as patch:
            patch.setattr(host.state.bus, "ping", unreachable)
            responses = {name: await client.get(f"/{name}/readyz") for name in SERVICES}
    for name, response in responses.items():
        assert response.status_code == 503, name
        assert response.json()["checks"]["bus"] == "unreachable: ConnectionError"


async def test_the_host_readiness_lists_every_service(settings):
    async with serving(all_services_host(settings)) as client:
        response = await readiness(client, "/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert sorted(response.json()["checks"]) == SERVICES


async def test_metrics_count_requests_by_route_template_not_by_raw_path(widgets_host):
    async with serving(widgets_host) as client:
        await client.get("/widgets/v1/widgets/918273", headers=bearer("admin"))
        response = await client.get("/widgets/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = [line for line in response.text.splitlines() if line.startswith("socialzone_http_requests_total{")]
    assert any('route="/v1/widgets/{widget_id}"' in line and 'service="widgets"' in line
               and 'status="404"' in line for line in lines), lines
    assert "918273" not in response.text
    assert "socialzone_http_request_duration_seconds_bucket" in response.text
