"""`run_demo`: single-scale against HieraTok through the ablation machinery (configs/ablations/demo.yaml:
the arms as Ray trials, held-out scores beside the patch-PCA and bicubic floors, results.json), then
the demo's pictures and report from those runs."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from hieratok.demo import figures
from hieratok.demo.report import floor_verdict, write_report

ABLATION = "ablations/demo"
NAMES = {"single-scale": "single-scale (ViTok)", "hieratok": "HieraTok"}  # arm -> the name the report shows
SEED = 0


def run_demo(out: str | Path = "demo_out", quick: bool = False, nproc: int | None = None,
             inception: str | None = None, vgg: str | None = None) -> Path:
    """`nproc`: runs trained at once (default: 2 when 2 cores exist), the cores shared among them."""
    from cluster.ablation import EVAL_IMAGES, run_ablation, run_dir_of
    from cluster.ablation_spec import load_ablation
    from hieratok.config.loader import resolve_preset_path

    t_start = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    nproc = nproc or min(2, cores)
    spec = load_ablation(resolve_preset_path(ABLATION))
    spec.runs.max_concurrent, spec.runs.cpus_per_worker = nproc, max(1, cores // nproc)
    command = f"hieratok ablate --config {ABLATION} --out {out / 'ablation'}" + (" --quick" if quick else "")
    print(f"\n$ {command}", flush=True)
    timings = {}
    outcome = run_ablation(spec, out / "ablation", quick=quick, inception=inception, vgg=vgg)
    timings["ablation"] = time.perf_counter() - t_start
    if outcome.failed:
        raise RuntimeError("demo runs failed (run the demo again to retry them): " + "; ".join(outcome.failed))
    results = json.loads(outcome.results.read_text())
    protocol, baselines = results["protocol"], results["baselines"]
    evals = {NAMES[arm]: results["arms"][arm]["seeds"][str(SEED)] for arm in NAMES}
    run_dirs = {NAMES[arm]: run_dir_of(out / "ablation", arm, SEED) for arm in NAMES}

    t0 = time.perf_counter()
    print("\n# pictures: loss curves, reconstructions, latent space", flush=True)
    images = torch.load(out / "ablation" / EVAL_IMAGES, weights_only=True)
    figs = _pictures(out, run_dirs, images, protocol, evals)
    timings["pictures"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    latent = {n: {k: e[k] for k in ("uniformity", "isotropy")} for n, e in evals.items()}
    steps = int(spec.narrowed(quick).run_config(spec.reference_arm, SEED).train.max_steps)
    (out / "summary.json").write_text(json.dumps({"eval": evals, "latent": latent, "baselines": baselines,
                                                  "timings": timings, "weights": protocol["scoring_weights"],
                                                  "ablation": str(outcome.results)}, indent=1))
    md, html = write_report(out, evals=evals, latent=latent, baselines=baselines,
                            weights_note=protocol["scoring_weights"], figures=figs, commands=[command],
                            timings=timings, steps=steps, eval_images=protocol["eval_images"],
                            runs_at_once=nproc, ablation_report=outcome.report)
    _print_summary(evals, latent, baselines, protocol["scoring_weights"], md, html, timings["total"])
    return md


def _pictures(out: Path, run_dirs: dict[str, Path], images: torch.Tensor, protocol: dict, evals: dict) -> dict:
    from hieratok import Tokenizer
    from hieratok.eval.latent_space import embed_2d, encode_images
    from hieratok.eval.shard_data import first_images

    tokenizers = {name: Tokenizer.from_pretrained(d / "export") for name, d in run_dirs.items()}
    labels = first_images(protocol["data"], len(images), "val", protocol["resolution"])[1]
    grid_rows = {"original": images[:8]}
    with torch.no_grad():
        for name, tok in tokenizers.items():
            grid_rows[name] = tok(images[:8], sample=False)[0]
    points = {name: embed_2d(encode_images(tok, images)) for name, tok in tokenizers.items()}
    return {
        "Training loss": figures.loss_curves(run_dirs, out / "loss_curves.png"),
        "Reconstructions (held-out images)": figures.reconstruction_grid(grid_rows, out / "reconstructions.png"),
        "Latent space": figures.latent_maps(points, labels.numpy(), evals, out / "latent_space.png"),
    }


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
