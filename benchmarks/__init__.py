"""The benchmarks and the soak: ``recsys-faust bench`` and ``recsys-faust soak`` run them from a
clone of the repository (they are not part of the installed package).

They start worker processes of their own (``faust -A benchmarks.minimal_app``) and a load
generator (``python -m benchmarks.load``): the repository root goes on ``PYTHONPATH`` here, so
those children import this package whatever directory the command was started in.
"""

import os
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)
