"""Settings of the ingest service, read from ``SOCIALZONE_*`` like the platform's own.

Secrets (the Meta app secret and verify token, the Mastodon token and webhook
secret) come from the environment or from secret files named after the field
(``/run/secrets/socialzone/meta_app_secret``), never from the repository.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from socialzone_common.settings import DEV_PLACEHOLDER_SECRET, ServiceSettings


class BrandConfig(BaseModel):
    """One brand of the brand list: ours (``brand``) or a competitor's."""

    # a typo ("handle", "product") must be refused, not leave the brand silently unmatched
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    kind: Literal["brand", "competitor"] = "brand"
    aliases: list[str] = Field(default_factory=list)
    handles: list[str] = Field(default_factory=list)
    products: list[str] = Field(default_factory=list)


class IngestSettings(ServiceSettings):
    # --- enrichment ---------------------------------------------------------------------------
    brands: list[BrandConfig] = Field(default_factory=list)
    """The brand list as JSON (``SOCIALZONE_BRANDS='[{"name": "Acme", "handles": ["@acme"]}]'``)."""
    brands_file: Path | None = None
    """A JSON file with the same list; its entries come after ``brands``."""

    ingest_enrichment_processes: int = Field(default=1, ge=0, le=64)
    """Worker processes that enrich batches (0: in the request's thread). Enrichment is the
    costliest step and pure Python: one process takes it off the server's interpreter (in the
    all-in-one process every service shares that one), more use more cores for large batches."""

    # --- protection ---------------------------------------------------------------------------
    ingest_max_payload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    """Largest request body accepted by a write (413 beyond)."""
    ingest_max_batch_items: int = Field(default=10_000, ge=1)
    """Most items in one batch (JSON array, NDJSON, CSV rows, connector payload)."""
    ingest_backlog_limit: int = Field(default=100_000, ge=1)
    """Unpublished outbox events above which writes get 429 with Retry-After."""
    ingest_retry_after_s: int = Field(default=5, ge=1)
    default_phone_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    """Region for phone numbers written without +country code (e.g. "FR"); None: they are refused."""

    # --- Meta webhooks (Facebook Pages, Messenger, Instagram) --------------------------------
    meta_app_secret: SecretStr | None = None
    """The app secret Meta signs deliveries with (X-Hub-Signature-256); None: deliveries are refused."""
    meta_verify_token: SecretStr | None = None
    """The token configured in the app dashboard for the GET verification handshake."""

    # --- Mastodon ----------------------------------------------------------------------------------
    mastodon_base_url: str | None = None
    """The instance to poll, e.g. https://mastodon.social; None: no polling."""
    mastodon_hashtags: list[str] = Field(default_factory=list)
    """Hashtags whose public timelines are polled (without #)."""
    mastodon_accounts: list[str] = Field(default_factory=list)
    """Accounts whose statuses are polled: account ids, or acct names resolved through lookup."""
    mastodon_access_token: SecretStr | None = None
    mastodon_webhook_secret: SecretStr | None = None
    """Secret of the instance's webhook (X-Hub-Signature: sha256=...); None: webhook deliveries are refused."""
    mastodon_poll_interval_s: float = Field(default=60.0, gt=0)

    # --- RSS / Atom -------------------------------------------------------------------------------
    feed_poll_interval_s: float = Field(default=300.0, gt=0)
    """How often each subscribed feed is fetched (it also honours ETag / Last-Modified)."""
    feed_max_entries: int = Field(default=500, ge=1)
    """Most entries taken from one fetch of one feed."""

    connector_timeout_s: float = Field(default=10.0, gt=0)
    """Timeout of the pollers' outgoing HTTP requests."""

    @field_validator("mastodon_hashtags")
    @classmethod
    def _no_hash(cls, tags: list[str]) -> list[str]:
        return [t.lstrip("#") for t in tags if t.strip("# ")]

    @model_validator(mode="after")
    def _no_placeholder_webhook_secrets(self) -> IngestSettings:
        if self.environment == "production":
            for name in ("meta_app_secret", "meta_verify_token", "mastodon_webhook_secret"):
                value: SecretStr | None = getattr(self, name)
                if value is not None and value.get_secret_value() in ("", DEV_PLACEHOLDER_SECRET):
                    raise ValueError(f"{name}: refusing to start in production with a default secret")
        return self

    def brand_list(self) -> list[BrandConfig]:
        """``brands`` followed by the entries of ``brands_file``."""
        entries = list(self.brands)
        if self.brands_file is not None:
            raw = json.loads(self.brands_file.read_text(encoding="utf-8-sig"))  # a BOM from an editor is fine
            entries += [BrandConfig.model_validate(item) for item in raw]
        return entries
