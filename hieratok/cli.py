"""The `hieratok` console script. Each subcommand lives in `hieratok/commands/<name>.py` with
`add_arguments(parser)` and `run(args) -> int`; modules are imported only when their command runs,
so `hieratok --help` stays fast and a heavy stack (ray, deepspeed) loads only where it is needed."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from data_pipeline.errors import DataError
from hieratok.config.errors import ConfigError, UserError
from hieratok.logs import LEVELS
from hieratok.logs import configure as configure_logging

# a user's mistake (a bad key, a missing file or weights, unreadable data): one line, exit code 2, no
# traceback (HIERATOK_DEBUG=1 shows it); anything else is a bug and keeps its traceback
USER_ERRORS = (UserError, DataError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError)

# name -> (module under hieratok.commands, one-line help); the order is the order in --help
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("prepare", "shard images into WebDataset or MDS shards"),
    "train": ("train", "train a tokenizer or a generator (distributed under torchrun or SLURM)"),
    "eval": ("eval", "reconstruction metrics (rFID, PSNR, SSIM, LPIPS) of a tokenizer"),
    "export": ("export", "write export/model.safetensors + config.json from a run's checkpoint"),
    "encode": ("encode", "encode a dataset into a latent cache for generator training"),
    "sample": ("sample", "sample a generator into an ADM-layout .npz"),
    "fid": ("fid", "FID / ISC / KID between two image sets (optionally on Ray)"),
    "launch": ("launch", "launch training on SLURM (or locally) with submitit, with requeue"),
    "sweep": ("sweep", "Ray Tune hyper-parameter sweep with ASHA"),
    "model-info": ("model_info", "parameter counts, tokens per scale and latent shape of a config"),
    "config": ("config", "show a preset's resolved config (every key, default and type), or list the presets"),
    "demo": ("demo", "the end-to-end CPU demo: single-scale vs HieraTok"),
    "ablate": ("ablate", "arms x seeds as real runs, scored beside the patch-PCA and bicubic floors"),
}


def package_version() -> str:
    """The installed distribution's version, or the source tree's when hieratok runs uninstalled."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hieratok")
    except PackageNotFoundError:
        from hieratok import __version__

        return __version__


def _command_module(name: str):
    return importlib.import_module(f"hieratok.commands.{COMMANDS[name][0]}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hieratok", description="HieraTok: multi-scale ViT tokenizers at scale")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("--log-level", choices=LEVELS, default=None,
                        help="diagnostics on stderr from this level up (default: $HIERATOK_LOG_LEVEL or info)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _command_module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for i, a in enumerate(argv) if not a.startswith("-") and (i == 0 or argv[i - 1] != "--log-level")),
                   None)
    if command is not None and command not in COMMANDS:
        command = None  # let argparse report the invalid choice
    args = build_parser(command).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    try:
        configure_logging(args.command, args.log_level)
        return int(_command_module(args.command).run(args) or 0)
    except USER_ERRORS as e:
        if os.environ.get("HIERATOK_DEBUG", "0") not in ("", "0"):
            raise
        print(f"hieratok {args.command}: {_what(e)}", file=sys.stderr)
        return 2


def _what(e: BaseException) -> str:
    """One line that names the bad thing: the error's own message, its kind when that helps."""
    kind = "config error: " if isinstance(e, ConfigError) else "data error: " if isinstance(e, DataError) else ""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{kind}{e.strerror}: {e.filename}"
    return kind + " ".join(str(e).split())


def entry() -> None:
    """The `hieratok` console script and `python -m hieratok`: main(), then the process ends without the
    interpreter's teardown (hieratok/process_exit.py says why)."""
    from hieratok.process_exit import exit_without_teardown

    try:
        code = main()
    except SystemExit as e:  # argparse's --help and usage errors
        code = e.code
    exit_without_teardown(code)


if __name__ == "__main__":
    entry()
