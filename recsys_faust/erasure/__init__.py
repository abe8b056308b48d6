"""Erasure (the right to be forgotten): what one user's erasure takes out of the state, pure.

A user is erased by one record on ``recsys-erasures`` (keyed by user_id, co-partitioned with the
inputs): the owner of their partition applies it in order with their events (ingest/erase.py),
the sink deletes their rows (sink/). docs/erasure.md says what remains, and for how long.
"""
