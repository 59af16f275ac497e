"""The customer's summary and recent timeline from the identity service, over HTTP.

Care never fails a case view because identity is slow or down: every call has a
timeout (``identity_timeout_s`` for both requests together) and the view then says
``available: false`` and why.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

log = logging.getLogger(__name__)


def _key(settings) -> str | None:
    if settings.identity_api_key is not None:
        return settings.identity_api_key.get_secret_value()
    if settings.admin_key is not None:
        return settings.admin_key.get_secret_value()
    path = settings.admin_key_file
    return path.read_text().strip() if path.is_file() else None


async def customer_view(settings, customer_id: str, *, client: httpx.AsyncClient | None = None) -> dict:
    """The view, through ``client`` (the runtime's, whose connections are reused) or a client
    of its own."""
    if client is None:
        async with httpx.AsyncClient() as own:
            return await customer_view(settings, customer_id, client=own)
    base = settings.identity_base_url()
    key = _key(settings)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = settings.identity_timeout_s
    try:
        summary, timeline = await asyncio.wait_for(asyncio.gather(
            client.get(f"{base}/v1/customers/{customer_id}", headers=headers, timeout=timeout),
            client.get(f"{base}/v1/customers/{customer_id}/timeline", headers=headers, timeout=timeout,
                       params={"limit": settings.identity_timeline_limit})), timeout)
    except (asyncio.TimeoutError, httpx.TimeoutException):
        return {"available": False, "reason": f"identity did not answer within {timeout:g}s"}
    except httpx.HTTPError as exc:
        return {"available": False, "reason": f"identity is unreachable ({type(exc).__name__})"}
    if summary.status_code != 200:
        return {"available": False,
                "reason": f"identity answered {summary.status_code} for the customer"}
    view = {"available": True, "summary": summary.json(), "timeline": []}
    if timeline.status_code == 200:
        body = timeline.json()
        view["timeline"] = body.get("items", body) if isinstance(body, dict) else body
    else:
        view["timeline_unavailable"] = f"identity answered {timeline.status_code} for the timeline"
    return view
