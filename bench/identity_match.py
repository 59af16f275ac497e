"""Match quality on Febrl 4: the identity match model against Splink, in the same run.

The 10,000 Febrl 4 records become CRM contact ingest items (``kind: contact``, a
``crm:febrl`` id each, the rest as author attributes) and are scored as identity scores
them (``ProfileFeatures.from_attributes`` -> blocking keys -> ``MatchModel.score``);
Splink 5 (DuckDB) gets the same records. Both run with every field and without the SSN and
the birth date. Protocol: ``socialzone_identity.matching.evaluation``.

Targets: F1 >= 0.98 without SSN and birth date, in less time than Splink.
``BENCH_MATCH_REPEAT`` sets how many runs the timings take the best of (default 3);
``BENCH_MATCH_PLATFORM`` how many Febrl 4 people (with their duplicates) are also replayed
through the real ingest and identity services (default 1000; 0 turns the replay off).
"""

from __future__ import annotations

import os

from socialzone_identity.matching.evaluation import febrl_figures

from bench.results import report

NOTES = {
    "febrl4_f1_no_ssn_dob": "target >= 0.98",
    "match_seconds": "features + keys + candidates + scoring, shipped parameters",
    "splink_seconds": "register + train (u, prior, EM) + predict",
    "splink_febrl4_f1": "at Splink's best threshold in hindsight",
    "splink_febrl4_f1_no_ssn_dob": "at Splink's best threshold in hindsight",
}


def main() -> None:
    repeat = int(os.environ.get("BENCH_MATCH_REPEAT", "3"))
    platform = int(os.environ.get("BENCH_MATCH_PLATFORM", "1000"))
    figures = febrl_figures(repeat=repeat, platform_people=platform, progress=lambda msg: print(f"identity_match: {msg}", flush=True))
    report("identity_match", figures, notes=NOTES)


if __name__ == "__main__":
    main()
