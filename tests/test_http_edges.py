"""Edges of the HTTP platform a client reaches without trying hard: the host's own routes
failing, and request methods nobody declared."""

from __future__ import annotations

from socialzone_common import catalog_docs
from tests.conftest import bearer
from tests.test_http_platform import PROBLEM, all_services_host, assert_problem, serving, widgets_host  # noqa: F401


async def test_an_unexpected_error_in_a_host_route_is_a_500_problem_that_leaks_nothing(settings, monkeypatch):
    def broken() -> dict:
        raise RuntimeError("password=hunter2 leaked from the catalog")

    monkeypatch.setattr(catalog_docs, "asyncapi_document", broken)
    async with serving(all_services_host(settings)) as client:
        response = await client.get("/asyncapi.json")
        after = await client.get("/healthz")
    body = assert_problem(response, 500)
    assert response.headers["content-type"] == PROBLEM
    assert body["title"] == "Internal server error"
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert after.status_code == 200


async def test_a_made_up_method_does_not_become_a_metrics_label(widgets_host):
    # Each label value is a time series kept for the life of the process: a client must
    # not be able to create them at will.
    async with serving(widgets_host) as client:
        refused = await client.request("MADEUP123", "/widgets/v1/widgets", headers=bearer("admin"))
        response = await client.get("/widgets/metrics")
    assert_problem(refused, 405)
    assert "MADEUP123" not in response.text
    assert any(line.startswith("socialzone_http_requests_total{") and 'method="other"' in line
               and 'service="widgets"' in line for line in response.text.splitlines())
