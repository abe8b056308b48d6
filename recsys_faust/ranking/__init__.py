"""Everything that turns a user's state into a ranked list (issue 13's home for the online path).

Started with the item-transitions model and the per-user blend; the active model, fold-in,
top-k and the scorers move here from ``model/`` next.
"""
