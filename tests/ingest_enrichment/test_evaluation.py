"""The figures the ingest benchmark merges into bench/results/ingest.json."""

from socialzone_ingest.enrichment import evaluation
from socialzone_ingest.enrichment.evaluation import INTENTS, enrichment_figures


def test_enrichment_figures_report_throughput_accuracy_and_intent_quality():
    figures = enrichment_figures(seconds=0.2)
    assert figures["enrich_per_s"] > 0
    assert 0 < figures["sentiment_accuracy"] <= 1
    assert 0 < figures["sentiment_accuracy_vader_only"] <= 1
    assert figures["sentiment_accuracy"] > figures["sentiment_accuracy_vader_only"]
    for intent in INTENTS:
        for kind in ("precision", "recall", "f1"):
            assert 0 <= figures[f"intent_{kind}_{intent}"] <= 1
            assert 0 <= figures[f"intent_{kind}_{intent}_heldout"] <= 1
    assert all(isinstance(v, float) for v in figures.values())


def test_module_prints_a_table(capsys, monkeypatch):
    monkeypatch.setattr(evaluation, "enrichment_figures", lambda **_: {
        "enrich_per_s": 1.0, "sentiment_accuracy": 0.8,
        **{f"intent_{k}_{i}": 0.9 for i in INTENTS for k in ("precision", "recall", "f1")},
        **{f"intent_{k}_{i}_heldout": 0.8 for i in INTENTS for k in ("precision", "recall", "f1")}})
    evaluation.main()
    out = capsys.readouterr().out
    assert "enrich_per_s" in out and "purchase_intent" in out
