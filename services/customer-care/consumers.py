"""Handlers for the events customer care subscribes to. Each runs inside the inbox
transaction (the platform commits it with the inbox row; raise to retry)."""

from __future__ import annotations

from sqlmodel import Session

from socialzone_common.catalog import CUSTOMERS, INSIGHTS, INTERACTIONS, MARKETING, PRIVACY, SALES, parse_payload
from socialzone_common.envelope import Envelope
from socialzone_common.worker import ConsumerSpec
from socialzone_care import batch, domain
from socialzone_care.clock import clock_of

INTERACTION_TYPES = frozenset({"identity.interaction.attributed"})
CUSTOMER_TYPES = frozenset({"identity.customer.merged", "identity.customer.unmerged",
                            "identity.customer.erasure_requested"})
FACT_TYPES = frozenset({"marketing.advocate.tier_changed", "marketing.advocate.flagged", "sales.lead.created",
                        "sales.lead.stage_changed", "sales.deal.won", "sales.deal.lost",
                        "insights.alert.raised", "insights.alert.resolved"})


class Handlers:
    """The handlers of one care runtime (its settings and clock)."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime

    @property
    def settings(self):
        return self.runtime.settings

    def now(self):
        return clock_of(self.runtime).now()

    def on_interaction(self, session: Session, envelope: Envelope) -> None:
        event = parse_payload(envelope)
        domain.on_interaction(session, customer_id=event.customer_id, interaction=event.interaction,
                              settings=self.settings, now=self.now())

    def on_interactions(self, session: Session, envelopes: list[Envelope]) -> None:
        """A polled batch in one transaction (see batch.py); the platform falls back to
        :meth:`on_interaction` one event at a time if this raises."""
        items = []
        clock = clock_of(self.runtime)
        for envelope in envelopes:
            event = parse_payload(envelope)
            items.append((event.customer_id, event.interaction, clock.now()))
        batch.on_interactions(session, items, settings=self.settings)

    def on_customer(self, session: Session, envelope: Envelope) -> None:
        event = parse_payload(envelope)
        now = self.now()
        if envelope.type == "identity.customer.merged":
            domain.on_merged(session, survivor_id=event.survivor_id, merged_id=event.merged_id,
                             settings=self.settings, now=now)
        elif envelope.type == "identity.customer.unmerged":
            domain.on_unmerged(session, customer_id=event.customer_id, restored_id=event.restored_customer_id,
                               settings=self.settings, now=now)
        elif envelope.type == "identity.customer.erasure_requested":
            domain.erase(session, erasure_id=event.erasure_id, customer_id=event.customer_id,
                         merged_ids=tuple(event.merged_ids), now=now)

    def on_fact(self, session: Session, envelope: Envelope) -> None:
        event = parse_payload(envelope)
        now, settings, kind = self.now(), self.settings, envelope.type
        if kind == "marketing.advocate.tier_changed":
            domain.on_tier_changed(session, customer_id=event.customer_id, tier=event.tier, settings=settings,
                                   now=now)
        elif kind == "marketing.advocate.flagged":
            domain.on_advocate_flagged(session, customer_id=event.customer_id)
        elif kind == "sales.lead.created":
            domain.on_lead(session, lead_id=event.lead_id, customer_id=event.customer_id, stage=event.stage,
                           settings=settings, now=now)
        elif kind == "sales.lead.stage_changed":
            domain.on_lead(session, lead_id=event.lead_id, customer_id=event.customer_id, stage=event.to_stage,
                           settings=settings, now=now)
        elif kind in ("sales.deal.won", "sales.deal.lost"):
            domain.on_deal_closed(session, lead_id=event.lead_id, deal_id=event.deal_id,
                                  customer_id=event.customer_id, won=kind.endswith("won"), settings=settings,
                                  now=now)
        elif kind == "insights.alert.raised":
            domain.on_alert(session, alert_id=event.alert_id, topic=event.topic, kind=event.kind,
                            severity=event.severity, raised=True, settings=settings, now=now)
        elif kind == "insights.alert.resolved":
            domain.on_alert(session, alert_id=event.alert_id, topic=event.topic, kind=event.kind, severity=None,
                            raised=False, settings=settings, now=now, raised_at=event.raised_at)


def consumer_specs(runtime) -> list[ConsumerSpec]:
    handlers = Handlers(runtime)
    return [
        ConsumerSpec(group="care-interactions", topics=[INTERACTIONS.name], handler=handlers.on_interaction,
                     batch_handler=handlers.on_interactions, types=INTERACTION_TYPES,
                     description="Opens cases from the zone stream, threads replies, keeps customer value"),
        ConsumerSpec(group="care-customers", topics=[CUSTOMERS.name, PRIVACY.name], handler=handlers.on_customer,
                     types=CUSTOMER_TYPES, description="Moves cases on merges and unmerges; erasure"),
        ConsumerSpec(group="care-factors", topics=[MARKETING.name, SALES.name, INSIGHTS.name],
                     handler=handlers.on_fact, types=FACT_TYPES,
                     description="Replicas of advocate tiers, open deals and crises for the priority"),
    ]
