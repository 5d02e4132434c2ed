"""The task registry: `task: tokenizer` or `task: generator` in the config picks the Task."""
from __future__ import annotations


def build_task(cfg):
    if cfg.task == "tokenizer":
        from hieratok.tokenizer.task import TokenizerTask

        return TokenizerTask(cfg)
    if cfg.task == "generator":
        from hieratok.generator.task import GeneratorTask

        return GeneratorTask(cfg)
    raise ValueError(f"unknown task '{cfg.task}'; valid: tokenizer, generator")
