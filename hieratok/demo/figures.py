"""The demo's pictures: loss curves, reconstruction grids, latent-space maps (matplotlib, PNG)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a training box
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from hieratok.metrics_file import read_records  # noqa: E402


def loss_curves(run_dirs: dict[str, Path], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, run_dir in run_dirs.items():
        rows = read_records(run_dir / "metrics.jsonl")
        rows = [r for r in rows if isinstance(r.get("loss"), float)]
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=name, lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (L1 + MSE + KL)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def reconstruction_grid(rows: dict[str, torch.Tensor], out: Path) -> Path:
    """One row per entry (e.g. original, single-scale, HieraTok), images in [-1, 1]."""
    n = next(iter(rows.values())).shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.25 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            img = ((images[c].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
            axes[r][c].imshow(img, interpolation="nearest")
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
        axes[r][0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def latent_maps(points: dict[str, np.ndarray], labels: np.ndarray, stats: dict[str, dict], out: Path) -> Path:
    fig, axes = plt.subplots(1, len(points), figsize=(4.2 * len(points), 4))
    for ax, (name, xy) in zip(np.atleast_1d(axes), points.items()):
        ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab20", s=6, alpha=0.8)
        s = stats[name]
        ax.set_title(f"{name}\nuniformity {s['uniformity']:.3f}, isotropy {s['isotropy']:.3f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("t-SNE of the latents of held-out images (colour: source photo)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
