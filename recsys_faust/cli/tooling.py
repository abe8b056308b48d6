"""``bench`` and ``soak``: run from a clone, where ``benchmarks/`` is."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Optional

import click

from .base import main


@main.command()
@click.option("--quick", is_flag=True, help="Smaller sizes (about one minute; with --scale, about four: 10k and "
              "100k items trained, 1M items on planted factors, table state at 100k users).")
@click.option("--scale", is_flag=True, help="The growth benchmark instead: ranking cost, HNSW recall, a worker's "
              "events/s and memory at 10k, 100k and 1M items, and table state at up to 1M users (benchmarks/scale.py), "
              "with a plot (about ten minutes).")
@click.option("--data", "data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Dataset CSV (default: ../shared/data/amazon-grocery/interactions.csv when present).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path(".bench"),
              show_default=True, help="Scratch directory for the bench's broker, database and workers.")
@click.option("--broker", type=click.Choice(["kafka", "tansu"]), default="kafka", show_default=True,
              help="The broker every row and its baseline run on.")
def bench(quick: bool, scale: bool, data: Optional[Path], workdir: Path, broker: str) -> None:
    """Benchmarks, each printed with a baseline measured in the same run and the ratio."""
    started = time.monotonic()
    if scale:
        run_scale = _benchmarks("scale").run_scale
        run_scale(quick, workdir)
        click.echo(f"\n(bench --scale {'--quick ' if quick else ''}took {time.monotonic() - started:.0f}s)")
        return
    run_suite = _benchmarks("suite").run_suite
    report = run_suite(quick=quick, data=data, workdir=workdir, broker=broker)
    click.echo("")
    click.echo(report.table())
    click.echo(f"\n(bench {'--quick ' if quick else ''}took {time.monotonic() - started:.0f}s)")



@main.command()
@click.option("--minutes", type=float, default=10.0, show_default=True, help="How long the load runs.")
@click.option("--rate", type=float, default=200.0, show_default=True, help="Events per second produced.")
@click.option("--users", type=int, default=2_000, show_default=True, help="Users of the synthetic shop.")
@click.option("--requests-per-s", "http_per_s", type=float, default=20.0, show_default=True,
              help="Recommendation requests per second (one client thread).")
@click.option("--sample-s", type=float, default=5.0, show_default=True, help="Seconds between samples.")
@click.option("--warm-per-user", type=int, default=50, show_default=True,
              help="Events per user applied before the clock starts (full profiles); 0: start empty.")
@click.option("--broker", type=click.Choice(["kafka", "tansu"]), default="kafka", show_default=True,
              help="The broker the soak runs on.")
@click.option("--durable-broker", is_flag=True,
              help="Tansu only: the dev broker keeps its log on a local S3 server (moto) rather than in memory.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path(".soak"),
              show_default=True, help="Work dir: the stack, soak.png and soak.json.")
def soak(minutes: float, rate: float, users: int, http_per_s: float, sample_s: float, warm_per_user: int,
         broker: str, durable_broker: bool, out: Path) -> None:
    """Run a dev stack under a steady event rate and HTTP load; print RSS, lag and serving p99
    over time, write OUT/soak.png and OUT/soak.json. Exit 1 on any error, a dead worker, dead
    letters, or events not all applied after the load stops."""
    import shutil

    soak_module = _benchmarks("soak")
    plot, run_soak, summary = soak_module.plot, soak_module.run_soak, soak_module.summary

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    result = run_soak(out / "stack", minutes=minutes, rate=rate, users=users, sample_s=sample_s,
                      http_per_s=http_per_s, warm_per_user=warm_per_user, durable_broker=durable_broker, broker=broker,
                      echo=click.echo)
    plot(result, out / "soak.png")
    figures = summary(result)
    (out / "soak.json").write_text(__import__("json").dumps({**figures, "samples": [
        s.__dict__ for s in result.samples]}, indent=1))
    click.echo(__import__("json").dumps(figures))
    click.echo(f"plot: {out / 'soak.png'}")
    if not result.ok:
        raise click.ClickException("; ".join(result.problems))


def _benchmarks(name: str) -> Any:
    """``benchmarks/<name>.py`` of the source tree: the benchmarks and the soak ship with the
    repository, not in the wheel (a clone with ``pip install -e '.[test]'`` has them)."""
    import importlib

    root = Path(__file__).resolve().parents[2]   # the clone: recsys_faust/cli/tooling.py -> ./
    if (root / "benchmarks" / f"{name}.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        return importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks", f"benchmarks.{name}"):
            raise
        raise click.ClickException(
            "the benchmarks and the soak live in the source repository, not in the installed package: "
            "run this command from a clone (git clone ...; pip install -e '.[test]')") from None

