"""demo_out/report.md and report.html: metrics side by side, pictures, and the cluster commands."""
from __future__ import annotations

import html
from pathlib import Path

from hieratok.eval.baselines import floor_psnr

METRICS = [("rfid", "rFID", "lower"), ("psnr", "PSNR (dB)", "higher"), ("ssim", "SSIM", "higher"),
           ("lpips", "LPIPS", "lower")]

CLUSTER = """\
# 1. shard ImageNet once (train/ in ImageNet's class-folder layout), to a bucket or a shared file system
hieratok prepare --src /datasets/imagenet/train --out s3://my-bucket/imagenet256 --format mds --resolution 256 --workers 64

# 2. a one-node SLURM test cluster on a spare machine, or skip this on a real cluster
sudo bash cluster/slurm_testbed.sh start

# 3. train both tokenizers on 4 nodes x 8 GPUs each; every job checkpoints and requeues itself on preemption
hieratok launch --config configs/tokenizer/vitok_s_b16.yaml --executor slurm --nodes 4 --gpus-per-node 8 \\
    --partition gpu --time 2880 --run-dir runs/vitok_s_b16 data.path=s3://my-bucket/imagenet256
hieratok launch --config configs/tokenizer/hieratok_s_b16.yaml --executor slurm --nodes 4 --gpus-per-node 8 \\
    --partition gpu --time 2880 --run-dir runs/hieratok_s_b16 data.path=s3://my-bucket/imagenet256

# 4. rFID / PSNR / SSIM / LPIPS on ImageNet val (50k) with the real Inception and VGG weights
hieratok eval --run-dir runs/hieratok_s_b16 --data s3://my-bucket/imagenet256 --split val --num 50000 \\
    --metrics rfid,psnr,ssim,lpips --out runs/hieratok_s_b16/eval.json"""


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def floor_verdict(evals: dict, baselines: dict) -> str:
    """Whether each tokenizer beats patch-PCA and bicubic at its latent size (PSNR): below that floor a
    model has not learned yet, and comparing two such models says nothing about the method."""
    floor = floor_psnr(baselines)
    parts = [f"{name} {'beats' if e['psnr'] > floor else 'does NOT beat'} the floor" for name, e in evals.items()]
    pca = baselines["patch_pca"]
    return (f"Sanity floor (PSNR {floor:.2f} dB: patch-PCA with {pca['components']} components a "
            f"{pca['patch']}x{pca['patch']} patch, {pca['values']} values, and bicubic at {baselines['bicubic']['side']} px): "
            + "; ".join(parts) + ".")


def write_report(out: Path, *, evals: dict, latent: dict, baselines: dict, weights_note: str,
                 figures: dict[str, Path], commands: list[str], timings: dict[str, float], steps: int,
                 eval_images: int, runs_at_once: int, ablation_report: Path) -> tuple[Path, Path]:
    names = list(evals) + [f"{b} (baseline)" for b in baselines]
    rows = []
    for key, label, better in METRICS:
        values = [evals[n].get(key) for n in evals] + [b.get(key, "-") for b in baselines.values()]
        rows.append([f"{label} ({better} is better)", *[_fmt(v) for v in values]])
    for key, label in (("uniformity", "latent uniformity (lower is more uniform)"),
                       ("isotropy", "latent isotropy (higher is more isotropic)")):
        rows.append([label, *[_fmt(latent[n][key]) for n in evals], *["-" for _ in baselines]])
    md = ["# HieraTok demo: single-scale against multi-scale, under identical settings\n",
          f"Both tiny tokenizers trained for {steps} steps at global batch 16, {runs_at_once} run(s) at once as "
          f"Ray trials of the ablation runner, same data order and seed; scored on {eval_images} held-out "
          f"images. One seed: the ablation's own report ({ablation_report.relative_to(out)}) says what one "
          f"seed cannot; `configs/ablations/tiny.yaml` runs 3.\n",
          "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", f"**{floor_verdict(evals, baselines)}**", "", f"**Weights used for scoring:** {weights_note}", "",
           f"Protocol: `results.json` beside {ablation_report.relative_to(out)}.", ""]
    for title, path in figures.items():
        md += [f"## {title}", "", f"![{title}]({path.name})", ""]
    md += ["## The command this demo ran", "", "```bash", *commands, "```", "",
           "## The same on a SLURM cluster", "", "```bash", CLUSTER, "```", "",
           "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md))

    table = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    figs = "".join(f"<h2>{html.escape(t)}</h2><img src='{p.name}' style='max-width:100%'>" for t, p in figures.items())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>HieraTok demo</title>"
            f"<style>body{{font-family:sans-serif;max-width:960px;margin:auto}}td,th{{padding:4px 10px;"
            f"border-bottom:1px solid #ddd}}pre{{background:#f5f5f5;padding:8px;overflow-x:auto}}</style></head><body>"
            f"<h1>HieraTok demo: single-scale against multi-scale</h1><p>{html.escape(md[1])}</p>"
            f"<table>{head}{table}</table><p><b>{html.escape(floor_verdict(evals, baselines))}</b></p>"
            f"<p><b>Weights used for scoring:</b> {html.escape(weights_note)}</p>"
            f"{figs}<h2>The command this demo ran</h2><pre>{html.escape(chr(10).join(commands))}</pre>"
            f"<h2>The same on a SLURM cluster</h2><pre>{html.escape(CLUSTER)}</pre></body></html>")
    html_path = out / "report.html"
    html_path.write_text(page)
    return md_path, html_path
