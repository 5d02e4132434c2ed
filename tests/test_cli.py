"""The CLI surface is a contract: this test freezes it. Update tests/assets/cli_surface.txt on purpose."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

from hieratok.cli import COMMANDS, build_parser

ASSET = Path(__file__).parent / "assets" / "cli_surface.txt"


def _surface(prefix: str, parser: argparse.ArgumentParser, lines: list[str]) -> None:
    """One line an argument; a nested sub-command (`config show`) lists its names, then its own arguments."""
    for action in parser._actions:
        if action.dest == "help":
            continue
        flags = ",".join(action.option_strings) or action.dest
        if isinstance(action, argparse._SubParsersAction):
            names = list(action.choices)
            lines.append(f"{prefix} {flags} nargs={action.nargs} required={action.required} choices={names}")
            for name, sub in action.choices.items():
                _surface(f"{prefix} {name}", sub, lines)
            continue
        lines.append(f"{prefix} {flags} nargs={action.nargs} required={action.required} choices={action.choices}")


def cli_surface() -> str:
    top = build_parser()
    lines = [f"hieratok {','.join(a.option_strings)} nargs={a.nargs} required={a.required} choices={a.choices}"
             for a in top._actions if a.option_strings and a.dest != "help"]  # top-level options: --version
    for name in COMMANDS:
        parser = build_parser(name)
        sub = next(a for a in parser._actions if a.dest == "command").choices[name]
        _surface(name, sub, lines)
    return "\n".join(lines) + "\n"


def test_cli_surface_is_frozen():
    if os.environ.get("HIERATOK_UPDATE_GOLDEN") == "1":  # a deliberate CLI change: rewrite, review, commit
        ASSET.parent.mkdir(exist_ok=True)
        ASSET.write_text(cli_surface())
    assert ASSET.exists(), "tests/assets/cli_surface.txt is missing: run with HIERATOK_UPDATE_GOLDEN=1"
    assert cli_surface() == ASSET.read_text(), \
        "CLI changed: if intended, rerun with HIERATOK_UPDATE_GOLDEN=1 and commit tests/assets/cli_surface.txt"


def test_every_command_has_help():
    for name in COMMANDS:
        out = subprocess.run([sys.executable, "-m", "hieratok", name, "--help"], capture_output=True, text=True)
        assert out.returncode == 0, (name, out.stderr)
        assert "usage: hieratok " + name in out.stdout


def test_unknown_command_fails_clearly():
    out = subprocess.run([sys.executable, "-m", "hieratok", "trian"], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice: 'trian'" in out.stderr
