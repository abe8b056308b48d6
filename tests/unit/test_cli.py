"""The operator's commands: every one answers --help with what it does, and the retrain
command refuses what it cannot do with a readable reason before touching anything."""

import click
import pytest
from click.testing import CliRunner

from recsys_faust.cli import main


def commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        yield path + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, path + (name,))


@pytest.mark.parametrize("path", [p for p, _ in commands(main)], ids=" ".join)
def test_every_command_answers_help_with_what_it_does(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    cmd = dict(commands(main))[path]
    assert cmd.help and cmd.help.split()[0].lower() not in ("todo", "tbd")
    assert cmd.help.split("\n")[0][:40] in " ".join(result.output.split())


def test_retrain_needs_the_database_and_says_so():
    result = CliRunner().invoke(main, ["retrain"], env={"DATABASE_URL": "", "RECSYS_ENV_FILE": ""})
    assert result.exit_code == 2 and "set DATABASE_URL" in result.output


def test_retrain_refuses_a_feature_the_drift_detector_does_not_judge():
    result = CliRunner().invoke(main, ["retrain", "--watch", "--on-drift", "catalogue,colour"],
                                env={"DATABASE_URL": "postgresql://x@127.0.0.1:1/x", "RECSYS_ENV_FILE": ""})
    assert result.exit_code == 2 and "colour" in result.output and "catalogue" in result.output


def test_every_command_answers_help_when_the_module_is_run_directly():
    """``python -m recsys_faust.cli`` defines every command before it runs (the bench and soak
    helpers included), as the console script does."""
    import subprocess
    import sys

    for command in ("bench", "soak", "keys", "kafka"):
        out = subprocess.run([sys.executable, "-m", "recsys_faust.cli", command, "--help"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "Usage:" in out.stdout, command + out.stderr
