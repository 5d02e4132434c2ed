"""Periodic evaluation during training: `evaluate_reconstruction` with the `eval:` config, and the
Inception / LPIPS networks loaded once for the whole run instead of at every evaluation.

    evaluator = ReconstructionScorer(cfg.eval, cfg.loss.lpips, device, lpips=task.lpips)
    if evaluator.due(step):
        loader = build_loader(cfg.data, rank, world, seed, batch_size=cfg.eval.batch_size, train=False,
                              split=cfg.eval.split)
        metrics = evaluator(model, loader)   # on every rank; identical dict everywhere
        # rank 0: log {"step": step, **{f"eval/{k}": v for k, v in metrics.items()}}
"""
from __future__ import annotations

import torch

from hieratok.eval.reconstruction import check_metrics, evaluate_reconstruction


class ReconstructionScorer:
    def __init__(self, eval_cfg, lpips_cfg=None, device="cpu", *, lpips=None):
        """eval_cfg: the `eval:` section; lpips_cfg: `loss.lpips` (weights paths), used when `lpips`
        (e.g. the training loss's LPIPS module) is not given and the metrics include lpips."""
        self.cfg = eval_cfg
        self.metrics = check_metrics(list(eval_cfg.metrics))
        self.device = torch.device(device)
        self.inception = None
        if "rfid" in self.metrics:
            from hieratok.eval.inception import load_inception

            self.inception = load_inception(eval_cfg.inception_weights, self.device)
        self.lpips = lpips
        if "lpips" in self.metrics and lpips is None:
            from hieratok.tokenizer.lpips import LPIPS

            self.lpips = LPIPS.from_files(getattr(lpips_cfg, "vgg_weights", None), getattr(lpips_cfg, "lin_weights", None))

    def due(self, step: int) -> bool:
        every = self.cfg.every_steps
        return every > 0 and step > 0 and step % every == 0

    def __call__(self, model, batches, autocast_dtype: torch.dtype | None = None) -> dict:
        return evaluate_reconstruction(model, batches, self.metrics, self.cfg.num_images, self.device,
                                       inception=self.inception, lpips=self.lpips,
                                       reference_stats=self.cfg.reference_stats, autocast_dtype=autocast_dtype)
