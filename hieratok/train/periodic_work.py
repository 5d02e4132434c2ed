"""Work the loop does every N steps besides checkpoints: held-out evaluation and image grids."""
from __future__ import annotations

import torch

from data_pipeline.loading.batch_wait import BatchFetcher, WaitAbandoned


class PeriodicWork:
    """Reconstruction metrics on `eval.num_images` held-out images every `eval.every_steps` steps
    (all ranks together, sums merged exactly), logged to metrics.jsonl, W&B and TensorBoard; and the
    task's image grid (reconstructions, samples) every `logging.wandb.image_every_steps` when W&B or
    TensorBoard is on.

    Batches come through a bounded wait (data.timeout_s). `should_stop()` true (a stop signal in a
    single process) abandons an evaluation between batches: nothing partial is logged."""

    def __init__(self, cfg, info, task, monitor, should_stop=None):
        self.cfg, self.info, self.task, self.monitor = cfg, info, task, monitor
        self.should_stop = should_stop
        self.grids = bool(task.previews) and monitor.wants_images and cfg.logging.wandb.image_every_steps > 0
        self.evaluator = task.held_out_scorer(info.device)
        self._loader, self._fetch = None, None
        if self.evaluator is not None:
            from data_pipeline.loading.capacity import require_some_batches

            require_some_batches(self._held_out(), what=f"eval.split {cfg.eval.split!r}")  # before training, not at step N

    def _held_out(self):
        if self._loader is None:  # built once: a held-out epoch from its start at every evaluation
            from data_pipeline import build_loader

            self._loader = build_loader(self.cfg.data, self.info.rank, self.info.world_size, self.cfg.train.seed,
                                        batch_size=self.cfg.eval.batch_size, train=False, split=self.cfg.eval.split)
            self._fetch = BatchFetcher(self._loader.where, self.cfg.data.timeout_s)
        return self._loader

    def _batches(self):
        it = iter(self._held_out())
        while True:
            try:
                yield self._fetch.next(it, stop=self.should_stop)
            except StopIteration:
                return

    def maybe_run(self, step: int, model) -> bool:
        """Returns whether an evaluation ran (or was abandoned): on every rank alike."""
        evaluated = self.evaluator is not None and self.evaluator.due(step)
        try:
            if evaluated:
                self._evaluate(step, model)
            if self.grids and step % self.cfg.logging.wandb.image_every_steps == 0:
                self._grid(step, model)
        except WaitAbandoned:
            self.monitor.log_event(step, {"event": "eval_abandoned", "reason": "stop signal"})
        return evaluated

    def close(self) -> None:
        if self._fetch is not None:
            self._fetch.close()
            self._loader.close()

    def _evaluate(self, step: int, model) -> None:
        bf16 = torch.bfloat16 if self.cfg.dist.mixed_precision == "bf16" else None
        results = self.evaluator(model, self._batches(), autocast_dtype=bf16)
        self.monitor.log_event(step, {"event": "eval", "split": self.cfg.eval.split,
                                      **{f"eval/{k}": v for k, v in results.items()}})
        if self.info.is_main:
            self.monitor.log_scalars(step, {f"eval/{k}": v for k, v in results.items()})

    def _grid(self, step: int, model) -> None:
        held_out = lambda: next(self._batches())["image"].to(self.info.device)  # noqa: E731  (read only if asked)
        grid = self.task.preview(model, held_out)  # a collective under FSDP2: every rank runs it
        if grid is None:  # the task cannot make one here (it said why, once)
            self.grids = False
        elif self.info.is_main:
            self.monitor.log_images(step, self.task.previews, grid)
