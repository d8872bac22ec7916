"""The `authz` command line, run in-process with click's CliRunner."""

from __future__ import annotations

from click.testing import CliRunner, Result

from cli import main


def authz(*args: str, env: dict[str, str] | None = None, code: int = 0) -> Result:
    """Run `authz ARGS` (in `env`, added to the process's) and check its exit code."""
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == code, (result.output, result.exception)
    return result
