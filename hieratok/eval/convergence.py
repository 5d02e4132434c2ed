"""Generator convergence on each tokenizer's latents: loss curves, and the steps each arm needs to reach
one fixed loss, as a ratio against the reference arm (the paper's "1.38x faster" is such a ratio).

Losses are flow-matching MSEs on per-channel normalised latents, so their scale is comparable across
latent spaces. A curve is smoothed by a trailing mean over `window` logged points before it is read.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from hieratok.metrics_file import read_records


def read_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) of every logged training step of a run."""
    rows = read_records(run_dir / "metrics.jsonl")
    return [(int(r["step"]), float(r["loss"])) for r in rows if "loss" in r]


def smoothed(curve: list[tuple[int, float]], window: int) -> list[tuple[int, float]]:
    out = []
    for i, (step, _) in enumerate(curve):
        part = [v for _, v in curve[max(0, i - window + 1): i + 1]]
        out.append((step, sum(part) / len(part)))
    return out


def steps_to_reach(curve: list[tuple[int, float]], target: float, window: int) -> int | None:
    """The first step whose smoothed loss is at or below `target` (None: never)."""
    return next((step for step, v in smoothed(curve, window) if v <= target), None)


def final_loss(curve: list[tuple[int, float]], window: int) -> float:
    return smoothed(curve, window)[-1][1]


def convergence_table(curves: dict[str, dict[int | str, list]], reference: str, window: int,
                      target: float | None = None) -> dict:
    """curves: {arm: {run: [(step, loss)]}}, a run a seed or a label. The target, unless given, is the highest
    final smoothed loss over all runs: the loss every run reaches. Per arm: steps to reach it per run, their mean, and
    speed-up = reference mean steps / arm mean steps (> 1: the arm's generator converges faster)."""
    runs = [c for by_seed in curves.values() for c in by_seed.values() if c]
    if target is None:
        target = max(final_loss(c, window) for c in runs)
    table = {}
    for arm, by_seed in curves.items():
        steps = {str(s): steps_to_reach(c, target, window) for s, c in by_seed.items() if c}
        reached = [v for v in steps.values() if v is not None]
        table[arm] = {"steps_to_target": steps,
                      "mean_steps": sum(reached) / len(reached) if reached and len(reached) == len(steps) else None,
                      "final_loss": {str(s): final_loss(c, window) for s, c in by_seed.items() if c}}
    ref = table[reference]["mean_steps"]
    for arm, row in table.items():
        row["speedup_vs_reference"] = ref / row["mean_steps"] if ref and row["mean_steps"] else None
    return {"target_loss": target, "window": window, "reference_arm": reference, "arms": table}


def write_convergence_report(out: Path, curves: dict, table: dict, protocol: dict) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, by_seed in curves.items():
        for seed, c in by_seed.items():
            if c:
                s = smoothed(c, table["window"])
                ax.plot([p for p, _ in s], [v for _, v in s], label=f"{arm} ({seed})")
    ax.axhline(table["target_loss"], color="grey", linestyle="--", linewidth=1, label="target loss")
    ax.set_xlabel("generator step")
    ax.set_ylabel(f"flow-matching loss (mean of {table['window']} logged points)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=120)
    plt.close(fig)

    def cell(v, fmt):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    md = ["# Generator convergence on each arm's latents\n",
          f"The tiny generator, constant learning rate, the same budget and data order for every arm. "
          f"Target loss {table['target_loss']:.4f}: the highest final loss over all runs, so every run "
          f"reaches it. Speed-up: the reference arm's ({table['reference_arm']}) steps over the arm's.\n",
          "| arm | steps to target (per run) | mean steps | speed-up vs reference | final loss |",
          "|---|---|---|---|---|"]
    for arm, row in table["arms"].items():
        per_seed = ", ".join(f"{s}: {cell(v, 'd')}" for s, v in row["steps_to_target"].items())
        finals = ", ".join(f"{v:.4f}" for v in row["final_loss"].values())
        md.append(f"| {arm} | {per_seed} | {cell(row['mean_steps'], '.0f')} | "
                  f"{cell(row['speedup_vs_reference'], '.2f')} | {finals} |")
    md += ["", "![loss curves](loss_curves.png)", "", "## Protocol", "", "```json",
           json.dumps(protocol, indent=1), "```", ""]
    report = out / "report.md"
    report.write_text("\n".join(md))
    results = out / "results.json"
    results.write_text(json.dumps({**table, "protocol": protocol}, indent=1))
    return results, report
