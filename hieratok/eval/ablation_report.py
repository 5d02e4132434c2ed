"""An ablation's results.json and report.md: per arm the per-seed scores, mean and std; the floors
computed on the same images; whether each arm beats the floors; and whether each arm's difference
from the reference arm exceeds the seed spread."""
from __future__ import annotations

import json
import math
from pathlib import Path

from hieratok.eval.baselines import floor_psnr

# (key in results, label, better) in the order of the table
COLUMNS = [("psnr", "PSNR dB", "higher"), ("ssim", "SSIM", "higher"), ("lpips", "LPIPS", "lower"),
           ("rfid", "rFID", "lower"), ("uniformity", "uniformity", "lower"), ("isotropy", "isotropy", "higher"),
           ("mechanism_psnr_drop", "PSNR drop, coarse K/V zeroed", "-"),
           ("train_gflops_per_image", "train GFLOPs/img", "-"), ("train_seconds", "train s", "-")]


def _flat(scores: dict) -> dict[str, float]:
    out = {k: v for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out["mechanism_psnr_drop"] = scores["mechanism"]["psnr_drop"]
    out["train_gflops_per_image"] = scores["train_flops_per_image"] / 1e9
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def summarise(runs: dict[str, dict]) -> dict:
    """{arm: {"seeds": {seed: scores}, "mean": {...}, "std": {...}, "missing": [seeds]}}"""
    arms = {}
    for arm, by_seed in runs.items():
        done = {s: _flat(v) for s, v in by_seed.items() if v is not None}
        keys = sorted({k for v in done.values() for k in v})
        stats = {k: _mean_std([v[k] for v in done.values() if v.get(k) is not None]) for k in keys
                 if any(v.get(k) is not None for v in done.values())}
        arms[arm] = {"seeds": {str(s): v for s, v in by_seed.items()}, "mean": {k: m for k, (m, _) in stats.items()},
                     "std": {k: sd for k, (_, sd) in stats.items()}, "n": len(done),
                     "missing": [s for s, v in by_seed.items() if v is None]}
    return arms


def compare(arms: dict, reference: str, key: str = "psnr") -> dict[str, str]:
    """Per arm: its difference from the reference in `key`, against twice the standard error of the
    difference of the two means (the seed spread); one seed per arm has no spread to compare with."""
    ref = arms[reference]
    out = {}
    for arm, a in arms.items():
        if arm == reference or key not in a["mean"] or key not in ref["mean"]:
            continue
        diff = a["mean"][key] - ref["mean"][key]
        if min(a["n"], ref["n"]) < 2:
            out[arm] = f"{diff:+.3f} dB; one seed: no seed spread to compare it with"
            continue
        se = math.sqrt(a["std"][key] ** 2 / a["n"] + ref["std"][key] ** 2 / ref["n"])
        verdict = "exceeds" if abs(diff) > 2 * se else "does not exceed"
        out[arm] = f"{diff:+.3f} dB, {verdict} the seed spread (2 x s.e. of the difference = {2 * se:.3f} dB)"
    return out


def _plot(arms: dict, baselines: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 * len(arms) + 2, 3.6))
    for i, (arm, a) in enumerate(arms.items()):
        points = [v["psnr"] for v in a["seeds"].values() if v is not None and "psnr" in v]
        ax.scatter([i] * len(points), points, color="C0", zorder=3)
        if "psnr" in a["mean"]:
            ax.errorbar(i, a["mean"]["psnr"], yerr=a["std"]["psnr"], fmt="_", color="k", capsize=6, ms=20)
    for j, (name, b) in enumerate(baselines.items()):
        ax.axhline(b["psnr"], color=f"C{j + 1}", ls="--", lw=1, label=f"{name} ({b['values']} values)")
    ax.set_xticks(range(len(arms)), list(arms), rotation=20)
    ax.set_ylabel("held-out PSNR (dB)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _cell(a: dict, key: str) -> str:
    if key not in a["mean"]:
        return "-"
    return f"{a['mean'][key]:.3f} ± {a['std'][key]:.3f}" if a["n"] > 1 else f"{a['mean'][key]:.3f}"


def write_results(out: Path, runs: dict, baselines: dict, protocol: dict, reference: str) -> tuple[Path, Path]:
    arms = summarise(runs)
    floor = floor_psnr(baselines)
    above = {arm: a["mean"].get("psnr", -math.inf) > floor for arm, a in arms.items()}
    comparison = compare(arms, reference)
    results = {"arms": arms, "baselines": baselines, "floor_psnr": floor, "above_floor": above,
               "comparison_psnr": comparison, "reference_arm": reference, "protocol": protocol}
    results_path = out / "results.json"
    results_path.write_text(json.dumps(results, indent=1))
    plot = _plot(arms, baselines, out / "psnr.png")

    md = [f"# Ablation: {', '.join(arms)}", "",
          f"{len(protocol['seeds'])} seed(s) per arm, the same data order and budget; scored on "
          f"{protocol['eval_images']} held-out images. Mean ± std over seeds.", "",
          "| arm | " + " | ".join(label for _, label, _ in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    md += [f"| {arm} | " + " | ".join(_cell(a, k) for k, _, _ in COLUMNS) + " |" for arm, a in arms.items()]
    md += [f"| {name} (baseline) | {b['psnr']:.3f} | {b['ssim']:.3f} | " + " | ".join("-" for _ in COLUMNS[2:]) + " |"
           for name, b in baselines.items()]
    md += ["", f"![held-out PSNR per arm]({plot.name})", "", "## Against the floor", ""]
    md += [f"- {arm}: {'beats' if ok else 'does NOT beat'} patch-PCA and bicubic ({floor:.3f} dB)"
           for arm, ok in above.items()]
    if not all(above.values()):
        md += ["", "**An arm below the floor has not learned yet: a comparison between such models says "
                   "nothing about the method.**"]
    md += ["", f"## Against the reference arm ({reference})", ""]
    md += [f"- {arm}: {text}" for arm, text in comparison.items()]
    missing = {arm: a["missing"] for arm, a in arms.items() if a["missing"]}
    if missing:
        md += ["", f"Runs without scores (failed or unfinished): {missing}"]
    md += ["", "## Protocol", "", "```json", json.dumps(protocol, indent=1), "```", ""]
    report = out / "report.md"
    report.write_text("\n".join(md))
    return results_path, report
