"""`run_demo`: the steps of the demo in order, then the report."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from hieratok.demo import figures
from hieratok.eval.latent_space import analyse, embed_2d, encode_images
from hieratok.demo.report import floor_verdict, write_report
from hieratok.demo.run import FULL, QUICK, TOKENIZERS, Demo
from hieratok.eval.ablation_scores import reference_stats
from hieratok.eval.baselines import floors
from hieratok.eval.shard_data import first_images
from hieratok.eval.scoring_weights import scoring_weights


def run_demo(out: str | Path = "demo_out", quick: bool = False, nproc: int | None = None,
             inception: str | None = None, vgg: str | None = None) -> Path:
    from hieratok import Tokenizer

    t_start = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    nproc = nproc or (2 if (os.cpu_count() or 1) >= 2 else 1)
    demo = Demo(out, QUICK if quick else FULL, nproc, inception, vgg)
    demo._timed("prepare", demo.prepare)
    demo._timed("train", demo.train)

    budget = demo.budget
    n_val = max(budget.eval_images, budget.latent_images)
    images, labels = first_images(demo.data, n_val, "val", 32)
    weights = scoring_weights(out / "weights", images)
    evals: dict = {}

    def evaluate() -> None:  # the held-out images' Inception statistics once, then each tokenizer
        reference = reference_stats(images[: budget.eval_images], weights, out / "weights" / "val_inception_stats.npz")
        evals.update(demo.evaluate(weights, reference))

    demo._timed("eval", evaluate)
    tokenizers = {name: Tokenizer.from_pretrained(demo.run_dir(p) / "export") for name, p in TOKENIZERS.items()}
    first = next(iter(tokenizers.values()))
    baselines = floors(first_images(demo.data, 3000, "train", 32)[0], images[: budget.eval_images],
                       patch=first.config.patch_size, latent_values=first.latent_shape[0] * first.latent_shape[1])

    print("\n# latent-space analysis and figures", flush=True)
    latent_stats, points = {}, {}
    for name, tok in tokenizers.items():
        z = encode_images(tok, images[: budget.latent_images])
        latent_stats[name] = analyse(z)
        points[name] = embed_2d(z)
    grid_rows = {"original": images[:8]}
    with torch.no_grad():
        for name, tok in tokenizers.items():
            grid_rows[name] = tok(images[:8], sample=False)[0]
    figs = {
        "Training loss": figures.loss_curves({n: demo.run_dir(p) for n, p in TOKENIZERS.items()}, out / "loss_curves.png"),
        "Reconstructions (held-out images)": figures.reconstruction_grid(grid_rows, out / "reconstructions.png"),
        "Latent space": figures.latent_maps(points, labels[: budget.latent_images].numpy(), latent_stats,
                                            out / "latent_space.png"),
    }
    demo.timings["total"] = time.perf_counter() - t_start
    (out / "summary.json").write_text(json.dumps({"eval": evals, "latent": latent_stats, "baselines": baselines,
                                                  "timings": demo.timings, "weights": weights.note}, indent=1))
    md, html = write_report(out, evals=evals, latent=latent_stats, baselines=baselines, weights_note=weights.note,
                            figures=figs, commands=demo.commands, timings=demo.timings, budget=budget, nproc=nproc)
    _print_summary(evals, latent_stats, baselines, weights.note, md, html, demo.timings["total"])
    return md


def _print_summary(evals, latent, baselines, note, md, html, seconds) -> None:
    names, floor_names = list(evals), list(baselines)
    print(f"\n{'':>12}" + "".join(f"{n:>24}" for n in names + floor_names))
    for key in ("rfid", "psnr", "ssim", "lpips"):
        floor_cells = "".join(f"{baselines[b][key]:>24.4f}" if key in baselines[b] else f"{'-':>24}"
                              for b in floor_names)
        print(f"{key:>12}" + "".join(f"{evals[n][key]:>24.4f}" for n in names) + floor_cells)
    for key in ("uniformity", "isotropy"):
        print(f"{key:>12}" + "".join(f"{latent[n][key]:>24.4f}" for n in names))
    print(f"\n{floor_verdict(evals, baselines)}")
    print(f"scored with: {note}")
    print(f"report: {md}\n        {html}\n({seconds:.0f} s in all)")


__all__ = ["run_demo"]
