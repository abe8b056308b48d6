"""``python -m recsys_faust.cli``: the same commands as ``recsys-faust``."""

from . import main

main()
