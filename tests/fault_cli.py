"""`hieratok` with test-only faults, set from the environment, so that neither the user's config
schema nor the training loop carries a test hook.

    HIERATOK_FAULT_NAN_LOSS=5,6   the task's loss is NaN at optimizer steps 5 and 6
    HIERATOK_FAULT_NAN_AUX=5      only the auxiliary (GAN discriminator) loss is NaN at step 5

Run it as the CLI is run: `python tests/fault_cli.py train ...`, or under torchrun.
"""
from __future__ import annotations

import functools
import os
import sys

from hieratok.cli import main
from hieratok.generator.task import GeneratorTask
from hieratok.losses.tokenizer_task import TokenizerTask


def _steps(name: str) -> set[int]:
    return {int(s) for s in os.environ.get(name, "").split(",") if s.strip()}


def _nan_loss_at(steps: set[int]):
    def wrap(compute_loss):
        @functools.wraps(compute_loss)
        def wrapper(self, model, batch, step):
            loss, terms = compute_loss(self, model, batch, step)
            if step in steps:
                loss = loss * float("nan")
                terms["loss"] = loss.detach()
            return loss, terms
        return wrapper
    return wrap


def _nan_aux_at(steps: set[int]):
    def wrap(aux_losses):
        @functools.wraps(aux_losses)
        def wrapper(self, step):
            out = aux_losses(self, step)
            if step in steps:
                out = {name: (loss * float("nan"), {**terms, "disc_loss": (loss * float("nan")).detach()})
                       for name, (loss, terms) in out.items()}
            return out
        return wrapper
    return wrap


if __name__ == "__main__":
    for task in (TokenizerTask, GeneratorTask):
        task.compute_loss = _nan_loss_at(_steps("HIERATOK_FAULT_NAN_LOSS"))(task.compute_loss)
    TokenizerTask.aux_losses = _nan_aux_at(_steps("HIERATOK_FAULT_NAN_AUX"))(TokenizerTask.aux_losses)
    sys.exit(main(sys.argv[1:]))
