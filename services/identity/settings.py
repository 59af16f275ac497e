"""Identity settings: ``SOCIALZONE_IDENTITY__...`` is not used; the fields sit at the top
level like every service's own fields (``SOCIALZONE_PHONE_DEFAULT_REGION=GB``)."""

from __future__ import annotations

from pydantic import Field

from socialzone_common.settings import ServiceSettings

DEFAULT_BLOCKLIST = [
    "unknown", "none", "null", "n/a", "na", "-", "test", "anonymous", "undefined", "nobody",
    "test@test.com", "test@example.com", "noreply@*", "no-reply@*", "donotreply@*",
    "+10000000000", "+11111111111", "+12345678900",
]
DEFAULT_CAPS = {"email": 5, "phone": 5, "device": 20, "web_cookie": 20, "x_handle": 10}


class IdentitySettings(ServiceSettings):
    phone_default_region: str = "US"
    """Region assumed for phone numbers written without a country code (ISO 3166-1 alpha-2)."""
    identifier_blocklist: list[str] = Field(default_factory=lambda: list(DEFAULT_BLOCKLIST))
    """Junk values that are never identifiers, compared after normalization; ``*`` is a wildcard.
    Add the company's own support addresses here."""
    identifier_caps: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_CAPS))
    """At most this many identifiers of a type per customer; a merge that would break a cap
    becomes a match suggestion for review instead."""
    default_identifier_cap: int = 50
    crm_sources: list[str] = Field(default_factory=lambda: ["crm"])
    """Interaction sources whose records are deterministic (their identifiers belong together)."""
    consent_purposes: list[str] = Field(default_factory=lambda: ["marketing", "profiling", "sales_contact"])
    erasure_services: list[str] = Field(default_factory=lambda: ["ingest", "care", "marketing", "sales", "insights"])
    """Services that must answer an erasure request with ``<service>.erasure.completed``."""
    suppression_salt: str = "socialzone-suppression-v1"
    """Salt of the hashed suppression list (erased persons' identifiers). Keep it stable."""
    match_threshold: float | None = None
    """Probability at or above which the match model creates a match suggestion; None: the
    model's own threshold (chosen for F1 when it was trained, see matching/README.md)."""
    match_on_ingest: bool = True
    """Score new or changed profiles against blocking candidates while attributing."""
    match_max_candidates: int = 50
    match_poll_s: float = 1.0
    """How often the matcher looks for new or changed profiles when it is idle."""
    match_batch: int = 100
    """Profiles scored per pass (one transaction of reads, then one short one of writes)."""
    match_max_block: int = 1000
    """A blocking key shared by more customers than this does not pick candidates."""
    match_busy_share: float = 0.2
    """With a backlog, the matcher works at most this share of the time and sleeps the rest,
    so that a burst of new authors cannot starve attribution of the CPU (or SQLite's lock)."""
    match_share_while_attributing: float = 0.05
    """The share instead while attribution has interactions waiting (its last poll was not
    empty): suggestions can wait for a burst to pass, the customers of that burst cannot
    (care bench at 1,000 new authors/s in the all-in-one process: the matcher took ~5% of the
    interpreter lock at 0.2, and attribution fell behind)."""
    timeline_stream_poll_s: float = 0.5
    resolution_batch: bool = True
    """Handle a polled batch of raw interactions in one transaction (falls back to one per event)."""

    def suggestion_threshold(self) -> float:
        """``match_threshold``, or the match model's own when it is not set."""
        if self.match_threshold is not None:
            return self.match_threshold
        from socialzone_identity.matching import MatchModel

        return MatchModel.default().threshold
