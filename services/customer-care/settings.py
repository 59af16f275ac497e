"""Customer care settings: flat ``SOCIALZONE_*`` fields, like every service's."""

from __future__ import annotations

from pydantic import Field, SecretStr

from socialzone_common.settings import ServiceSettings


class CareSettings(ServiceSettings):
    # The identity service, for the customer summary and timeline on GET /cases/{id}.
    identity_url: str | None = None
    """Base URL of the identity service (``SOCIALZONE_IDENTITY_URL``), e.g.
    ``http://identity:8000/identity``; unset: this process's own host and port
    (``http://127.0.0.1:8000/identity`` with the defaults), as in the all-in-one process."""
    identity_api_key: SecretStr | None = None
    """Bearer key with identity:read (``SOCIALZONE_IDENTITY_API_KEY`` or the secret file
    ``identity_api_key``); without one the admin key is used when this process has it."""
    identity_timeout_s: float = Field(default=1.0, gt=0)
    """How long GET /cases/{id} waits for identity before it says the summary is unavailable."""
    identity_timeline_limit: int = Field(default=10, ge=1, le=100)

    # The SLA clock.
    sla_tick_s: float = Field(default=5.0, gt=0)
    """How often the SLA clock looks for warnings, breaches and expired advocate offers."""
    sla_warning_fraction: float = Field(default=0.2, ge=0, le=1)
    """Warn when this fraction of an SLA target (in business time) is left."""

    reopen_window_s: float = Field(default=7 * 86400, ge=0)
    """A customer's follow-up in the thread of a case resolved within this window reopens it;
    a later one opens a new case."""

    # Advocates as first-tier support.
    advocate_offer_s: float = Field(default=1800, gt=0)
    """How long an advocate has to answer a question offered to them (wall-clock seconds)."""
    advocate_fallback_margin_s: float = Field(default=900, ge=0)
    """An offer falls back to an agent at least this long (business time) before the
    first-response SLA would breach."""

    # Priority weights: the most points each factor can add (see priority.py).
    priority_weights: dict[str, float] = Field(default_factory=lambda: {
        "base": 10, "intent": 10, "sentiment": 15, "reach": 10, "customer_value": 10,
        "advocate_tier": 10, "open_deals": 10, "crisis": 15, "sla": 10, "escalation": 20,
    })

    def identity_base_url(self) -> str:
        if self.identity_url:
            return self.identity_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}/identity"
