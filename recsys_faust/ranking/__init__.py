"""Everything that turns a user's state into a ranked, stored list: the active model and its
artifact, fold-in, item transitions, the blend, top-k, the popularity fallback, the ``Ranker``
that picks the strategy, the scorers and the builder of ready-list values."""
