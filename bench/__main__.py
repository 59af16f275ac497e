"""Run benchmarks by name: ``python -m bench [name ...]`` (all when none is given).

A benchmark is a module ``bench/<name>.py`` with a ``main()``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

NOT_BENCHMARKS = {"__init__", "__main__", "results"}


def available() -> list[str]:
    return sorted(p.stem for p in Path(__file__).parent.glob("*.py") if p.stem not in NOT_BENCHMARKS)


def main(names: list[str]) -> None:
    known = available()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(known)}")
    for name in names or known:
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
