"""Random ids for events, cases, customers: version 4 UUIDs as text.

``str(uuid.uuid4())`` reads the OS's random source once per id and builds a UUID object
on the way; every event, case, message and customer needs one, so ids are cut from one
read of ``os.urandom`` per thousand (measured: several percent of the all-in-one
process under load went to ``uuid4``). Same randomness, same format.
"""

from __future__ import annotations

import os

_POOL: list[str] = []
_BATCH = 1000


def uuid4_text() -> str:
    """A random (version 4, RFC 9562 variant) UUID in its canonical text form. Thread-safe:
    ``list.pop`` is atomic, and two threads refilling at once only draw more randomness."""
    try:
        return _POOL.pop()
    except IndexError:
        _POOL.extend(_fresh(_BATCH))
        return _POOL.pop()


def _fresh(count: int) -> list[str]:
    raw = bytearray(os.urandom(16 * count))
    out = []
    for i in range(0, 16 * count, 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40  # version 4
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80  # variant 10
        h = raw[i:i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out
