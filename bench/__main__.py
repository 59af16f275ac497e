"""Run benchmarks by name: ``python -m bench [name ...]`` (all when none is given)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["bus"]


def main(names: list[str]) -> None:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    for name in names or BENCHMARKS:
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
