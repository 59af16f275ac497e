"""Events identity publishes about attribution and the customer lifecycle.

The erasure request is on zone.privacy with the services' completions: see privacy.py.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime

from socialzone_common.catalog import CUSTOMERS, INTERACTIONS
from socialzone_common.events.common import Id, Identifier, Interaction, ValueObject, ZoneEvent

# --- zone.interactions: the shared zone stream ------------------------------------------


class InteractionAttributed(ZoneEvent, type="identity.interaction.attributed", topic=INTERACTIONS, version=1):
    """An interaction was attributed to one customer: the shared zone stream.

    Subject and partition key: ``customer_id``.
    """

    customer_id: Id
    interaction: Interaction
    """The interaction exactly as ingest recorded it."""
    matched_by: Identifier | None = None
    """The identifier that resolved the author; None when a new customer was created for them."""
    merged_from: Id | None = None
    """The customer the author resolved to first, when that customer has since been merged
    into ``customer_id``."""


class AttributedInteractionRetracted(ZoneEvent, type="identity.interaction.retracted", topic=INTERACTIONS, version=1):
    """An attributed interaction was retracted at its source; departments should drop it.

    Subject and partition key: ``customer_id``.
    """

    interaction_id: Id
    customer_id: Id
    retracted_at: AwareDatetime


# --- zone.customers ------------------------------------------------------------------------


class CustomerCreated(ZoneEvent, type="identity.customer.created", topic=CUSTOMERS, version=1):
    """A customer profile was created.

    Subject and partition key: ``customer_id``.
    """

    customer_id: Id
    created_from: Literal["interaction", "agent"]
    """interaction: an author no known customer matched; agent: created by hand."""
    interaction_id: Id | None = None
    """The interaction whose author became this customer, when created_from is interaction."""
    display_name: str | None = None


class MergeEvidence(ValueObject):
    """Why two profiles were judged the same person. Names identifier types, not values."""

    identifier_type: str
    """The type of the identifier both profiles share, e.g. email."""
    event_id: str | None = None
    """The event that brought the shared identifier, when there is one."""


class CustomerMerged(ZoneEvent, type="identity.customer.merged", topic=CUSTOMERS, version=1):
    """Two customer profiles were merged: the merged one now lives on in the survivor.

    Departments re-key what they hold for ``merged_id`` to ``survivor_id``.
    Subject and partition key: ``survivor_id``.
    """

    subject_field: ClassVar[str] = "survivor_id"

    survivor_id: Id
    merged_id: Id
    rule: str
    """The match rule that decided, e.g. strong_identifier or manual."""
    reason: str | None = None
    """An agent's note for a manual merge."""
    evidence: tuple[MergeEvidence, ...] = ()


class CustomerUnmerged(ZoneEvent, type="identity.customer.unmerged", topic=CUSTOMERS, version=1):
    """A merge was undone: a customer profile was restored with the identifiers it brought.

    Subject and partition key: ``customer_id`` (the profile that gave them back).
    """

    customer_id: Id
    restored_customer_id: Id
    identifiers_moved: tuple[Identifier, ...]
    """Identifiers that moved from ``customer_id`` back to ``restored_customer_id``."""
    reason: str | None = None


class IdentifierLinked(ZoneEvent, type="identity.identifier.linked", topic=CUSTOMERS, version=1):
    """An identifier was linked to a customer.

    Subject and partition key: ``customer_id``.
    """

    customer_id: Id
    identifier: Identifier
    strength: Literal["strong", "weak"]
    """strong: proves the person (verified e-mail, CRM id); weak: suggests it (same name)."""
    rule: str
    """The rule that linked it, e.g. author_identifier, crm_email, agent."""
    evidence_event_id: str | None = None
    """The event the identifier came from."""


class ConsentChanged(ZoneEvent, type="identity.consent.changed", topic=CUSTOMERS, version=1):
    """A customer granted or withdrew consent for one purpose.

    Subject and partition key: ``customer_id``.
    """

    customer_id: Id
    purpose: str
    """What the consent covers, e.g. marketing_email, advocacy_program, profiling, research."""
    granted: bool
    source: str
    """Where the customer said so, e.g. web_form, email_unsubscribe, agent, api."""
    changed_at: AwareDatetime
    """When the customer gave or withdrew it (may precede the event time)."""

