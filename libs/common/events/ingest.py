"""Events ingest publishes: interactions recorded from the sources, and their retraction."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from socialzone_common.catalog import RAW_INTERACTIONS
from socialzone_common.events.common import Id, Interaction, ZoneEvent


class InteractionRecorded(ZoneEvent, type="ingest.interaction.recorded", topic=RAW_INTERACTIONS, version=1):
    """An interaction was recorded from a source, de-duplicated and enriched.

    Subject and partition key: the author key (``interaction.author.key``), a hash
    of the author's first identifier, since no customer is known yet.
    """

    subject_field: ClassVar[str] = "interaction.author.key"
    subject_description: ClassVar[str | None] = (
        "the author key, a hash of data.interaction.author.identifiers[0] (no customer is known yet)")

    interaction: Interaction


class InteractionRetracted(ZoneEvent, type="ingest.interaction.retracted", topic=RAW_INTERACTIONS, version=1):
    """An interaction ingest had recorded was deleted or withdrawn at its source.

    Subject and partition key: the author key of the recorded interaction, so the
    retraction follows it on the same partition.
    """

    subject_field: ClassVar[str] = "author_key"

    interaction_id: Id
    author_key: Id
    """The author key the interaction was recorded under (``Author.key``)."""
    source: str = Field(min_length=1, max_length=64)
    """The interaction's source, as in ``Interaction.source``."""
    external_id: str | None = None
    retracted_at: AwareDatetime
    """When the source reported the deletion."""
    reason: Literal["deleted", "withdrawn", "moderated", "unknown"] = "unknown"
    """deleted by the author, withdrawn (e.g. a CRM row voided), moderated by the network."""
