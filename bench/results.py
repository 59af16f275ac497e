"""Every benchmark writes flat JSON to bench/results/<name>.json and prints a short table."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"


def report(name: str, figures: dict[str, float | int | str], *, notes: dict[str, str] | None = None) -> Path:
    record = dict(figures)
    record["cpu_count"] = os.cpu_count() or 0
    record["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    table = Table(title=f"bench {name}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("note")
    for key, value in figures.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        table.add_row(key, shown, (notes or {}).get(key, ""))
    Console().print(table)
    return path
