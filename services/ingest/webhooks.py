"""Webhooks the platforms call: ``/ingest/webhooks/meta`` and ``/ingest/webhooks/mastodon``.

They are outside ``/v1`` because Meta and Mastodon cannot send our bearer keys: each
delivery is authenticated by its HMAC signature over the raw body instead
(``X-Hub-Signature-256`` with the Meta app secret, ``X-Hub-Signature`` with the
Mastodon webhook secret), and Meta's subscription handshake by the verify token.
A missing or wrong signature is a 401 and nothing is recorded; without a configured
secret every delivery is refused.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from socialzone_common.deps import RuntimeDep, get_settings
from socialzone_common.errors import Forbidden, Unauthorized

from socialzone_ingest.api import apply, batch_response, ensure_capacity, parse_json, raw_body_doc, read_body
from socialzone_ingest.connectors import mastodon, meta
from socialzone_ingest.settings import IngestSettings

router = APIRouter(tags=["webhooks"])
IngestSettingsDep = Annotated[IngestSettings, Depends(get_settings)]


@router.get("/meta", response_class=PlainTextResponse, responses={403: {}},
            summary="Meta's subscription handshake: echoes hub.challenge when hub.verify_token matches")
def meta_handshake(settings: IngestSettingsDep,
                   mode: Annotated[str | None, Query(alias="hub.mode")] = None,
                   token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
                   challenge: Annotated[str | None, Query(alias="hub.challenge", max_length=256)] = None) -> Response:
    expected = settings.meta_verify_token.get_secret_value() if settings.meta_verify_token else None
    if (mode != "subscribe" or not expected or token is None or challenge is None
            or not hmac.compare_digest(token.encode(), expected.encode())):
        raise Forbidden("hub.verify_token: the handshake does not match this app's verify token")
    return PlainTextResponse(challenge)


@router.post("/meta", responses={401: {}, 413: {}, 422: {}, 429: {}},
             openapi_extra=raw_body_doc("A Meta webhook delivery (object page or instagram), signed"),
             summary="Meta deliveries: Page feed posts and comments, Messenger, Instagram comments")
async def meta_delivery(request: Request, runtime: RuntimeDep, settings: IngestSettingsDep) -> Response:
    body = await read_body(request, settings)
    secret = settings.meta_app_secret.get_secret_value() if settings.meta_app_secret else None
    if not secret:
        raise Unauthorized("Meta deliveries are refused: no app secret is configured (SOCIALZONE_META_APP_SECRET)")
    if not meta.signature_valid(secret, body, request.headers.get("x-hub-signature-256")):
        raise Unauthorized("X-Hub-Signature-256: missing or not the HMAC of this body with the app secret")
    await ensure_capacity(runtime, settings)
    parsed = await run_in_threadpool(meta.parse, parse_json(body))
    return batch_response(await apply(runtime, settings, parsed), success_status=200)


@router.post("/mastodon", responses={401: {}, 413: {}, 422: {}, 429: {}},
             openapi_extra=raw_body_doc("A Mastodon server webhook delivery (status.created, status.updated)"),
             summary="Mastodon webhook deliveries")
async def mastodon_delivery(request: Request, runtime: RuntimeDep, settings: IngestSettingsDep) -> Response:
    body = await read_body(request, settings)
    secret = settings.mastodon_webhook_secret.get_secret_value() if settings.mastodon_webhook_secret else None
    if not secret:
        raise Unauthorized("Mastodon deliveries are refused: no webhook secret is configured "
                           "(SOCIALZONE_MASTODON_WEBHOOK_SECRET)")
    if not mastodon.signature_valid(secret, body, request.headers.get("x-hub-signature")):
        raise Unauthorized("X-Hub-Signature: missing or not the HMAC of this body with the webhook secret")
    await ensure_capacity(runtime, settings)
    parsed = await run_in_threadpool(mastodon.parse_webhook, parse_json(body))
    return batch_response(await apply(runtime, settings, parsed), success_status=200)
