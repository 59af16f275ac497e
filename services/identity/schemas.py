"""API models: what callers send (Create / Update bodies) and the main answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MergeRequest(Body):
    customer_ids: list[str] = Field(min_length=2, max_length=2, description="The two customers to merge; the older survives.")
    reason: str | None = Field(default=None, max_length=1000)
    dry_run: bool = Field(default=False, description="Preview the merged profile; nothing is written.")


class UnmergeRequest(Body):
    restored_customer_id: str = Field(min_length=1, max_length=40, description="The merged customer to restore.")
    identifiers: list[str] | None = Field(default=None, description="`type:value` identifiers to give back; "
                                          "default: every identifier that came through the restored customer.")
    reason: str | None = Field(default=None, max_length=1000)


class ConsentUpdate(Body):
    granted: bool
    source: str = Field(min_length=1, max_length=64, examples=["web_form", "email_unsubscribe", "agent"])
    changed_at: AwareDatetime | None = Field(default=None, description="When the customer said so; default: now.")
    reason: str | None = Field(default=None, max_length=1000)


class IdentifierCreate(Body):
    type: str = Field(min_length=1, max_length=64)
    value: str = Field(min_length=1, max_length=512)
    reason: str | None = Field(default=None, max_length=1000)


class Decision(Body):
    reason: str | None = Field(default=None, max_length=1000)


class IdentifierPublic(BaseModel):
    type: str
    value: str
    strength: str
    rule: str
    linked_at: datetime
    evidence: dict[str, Any]
    anchor: str | None = None
    masked: bool = False


class TimelineItem(BaseModel):
    id: int
    event_id: str
    type: str
    department: str
    occurred_at: datetime
    summary: str
    channel: str | None = None
    interaction_id: str | None = None
    retracted: bool = False
    origin_customer_id: str
    event: dict[str, Any] | None = None


class TimelinePage(BaseModel):
    customer_id: str
    requested_id: str
    merged_into: str | None = None
    items: list[TimelineItem]
    next_cursor: str | None = None
