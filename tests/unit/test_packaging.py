"""Every package directory is a regular package: the build (``packages.find``) only ships those,
so a directory without ``__init__.py`` works in the editable dev install and is missing from a
wheel or the Docker image."""

from pathlib import Path

import recsys_faust

ROOT = Path(recsys_faust.__file__).resolve().parent


def test_every_directory_with_modules_has_an_init():
    missing = [str(d.relative_to(ROOT)) for d in [ROOT, *ROOT.rglob("*")]
               if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")) and not (d / "__init__.py").exists()]
    assert missing == []
