"""`hieratok model-info --config FILE [key=value ...] [--json]`."""
from __future__ import annotations

import json


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="preset or run config YAML")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from hieratok.config.loader import load_config

    cfg = load_config(args.config, args.overrides)
    if cfg.task == "generator":
        from hieratok.generator.info import generator_info

        info = generator_info(cfg.model)
    else:
        from hieratok.tokenizer.info import tokenizer_info

        info = tokenizer_info(cfg.model)
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>16}: {v}")
    return 0
