"""``socialzone tail``: what an analyst runs to watch a topic."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
from rich.console import Console
from rich.json import JSON
from rich.panel import Panel

from socialzone_common.bus import Record, create_bus
from socialzone_common.envelope import header
from socialzone_common.settings import load_settings


def render(record: Record) -> Panel:
    envelope = record.envelope
    if envelope is None:
        return Panel(repr(record.value)[:2000], title=f"{record.topic}[{record.partition}]@{record.offset} "
                     f"undecodable: {record.decode_error}", border_style="red")
    title = (f"[bold]{envelope.type}[/] subject={envelope.subject} "
             f"{envelope.time.isoformat()} {record.topic}[{record.partition}]@{record.offset}")
    error = header(record.headers, "dlq_error")
    if error:
        title += f" [red]dlq: {error}[/]"
    return Panel(JSON(orjson.dumps(envelope.data).decode()), title=title, subtitle=envelope.id,
                 border_style="red" if error else "cyan")


def matches(record: Record, *, types: set[str], customer: str | None) -> bool:
    envelope = record.envelope
    if envelope is None:
        return not types and customer is None
    if types and envelope.type not in types:
        return False
    return customer is None or envelope.subject == customer


async def tail_topic(topic: str, *, from_beginning: bool, types: set[str], customer: str | None,
                     limit: int | None = None, idle_exit: float | None = None, console: Console | None = None) -> int:
    console = console or Console()
    settings = load_settings()
    bus = create_bus(settings)
    await bus.start()
    # A throw-away group: tailing never moves another group's offsets.
    consumer = bus.consumer(group=f"tail-{uuid.uuid4().hex[:12]}", topics=[topic],
                            start_from="earliest" if from_beginning else "latest", client_id="tail",
                            ephemeral=True)
    await consumer.start()
    shown, idle_since = 0, time.monotonic()
    try:
        while limit is None or shown < limit:
            records = await consumer.poll(max_records=100, timeout=0.5)
            if records:
                idle_since = time.monotonic()
            elif idle_exit is not None and time.monotonic() - idle_since > idle_exit:
                break
            for record in records:
                if matches(record, types=types, customer=customer):
                    console.print(render(record))
                    shown += 1
                    if limit is not None and shown >= limit:
                        break
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        await consumer.close()
        await bus.close()
    return shown
