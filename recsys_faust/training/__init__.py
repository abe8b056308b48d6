"""The offline side: datasets, ALS training (``train``) and offline evaluation (``evaluate``)."""
