"""The names an answer's ``strategy`` field takes (part of the contract), in fallback order.

A user gets the first that has something for them: the blend when the model knows their items
and the transitions have successors for their latest day, each of the two alone when only it
has, and popularity (personalised by category affinity when the user has one) otherwise.
"""

STRATEGY_BLEND = "als+transitions"
STRATEGY_ALS = "als"
STRATEGY_TRANSITIONS = "transitions"
STRATEGY_AFFINITY = "popular_affinity"
STRATEGY_POPULAR = "popular"

#: ``model_version`` of answers when no ALS model is active (popularity and transitions only).
POPULARITY_MODEL_VERSION = "popularity-v1"

ALL = (STRATEGY_BLEND, STRATEGY_ALS, STRATEGY_TRANSITIONS, STRATEGY_AFFINITY, STRATEGY_POPULAR)
