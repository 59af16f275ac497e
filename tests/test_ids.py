"""Random ids: version 4 UUIDs as text, from a pool of OS randomness."""

from __future__ import annotations

import threading
import uuid

from socialzone_common.ids import uuid4_text


def test_ids_are_canonical_version_4_uuids_and_never_repeat_even_across_threads():
    seen: list[str] = []

    def draw() -> None:
        seen.extend(uuid4_text() for _ in range(3000))  # several refills of the pool each

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == 12_000 and len(set(seen)) == 12_000
    for text in seen:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
