"""Catalogue rules: what a shop says about its items (available, hidden until, category, boost),
applied to every answer at answer time on every worker (rules.py)."""
