"""The match model of the identity service: a documented Fellegi–Sunter model that scores
two profiles for "same person", and the blocking keys that find candidate pairs.

    from socialzone_identity.matching import MatchModel, ProfileFeatures, Match
    model = MatchModel.default()
    match = model.score(a, b)          # Match(probability, weight, features)
    keys = model.blocking_keys(a)      # set[str], indexed by identity to find candidates
    model.explain(match)               # short reasons for agents

See README.md in this folder for the features, levels, parameters and measured quality.
"""

from socialzone_identity.matching.features import ProfileFeatures
from socialzone_identity.matching.model import FeatureComparison, Match, MatchModel

__all__ = ["FeatureComparison", "Match", "MatchModel", "ProfileFeatures"]
