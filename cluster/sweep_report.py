"""A finished sweep's results: a table (CSV and markdown, one row a trial) and the best config as YAML."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from hieratok.config.loader import to_yaml
from cluster.sweep_spec import SweepSpec

FINISHED, STOPPED, FAILED = "finished", "stopped early", "error"


def trial_rows(results, spec: SweepSpec) -> list[dict]:
    """One row a trial, best first: the swept values, steps trained, final and best metric, status, and
    the Ray node that ran it (the first 8 characters of its id)."""
    max_steps = spec.max_steps()
    metric = spec.metric
    rows = []
    for result in results:
        reported = result.metrics or {}
        history = result.metrics_dataframe
        values = history[metric].dropna().tolist() if history is not None and metric in history else []
        step = reported.get("step")
        status = FAILED if result.error else FINISHED if step is not None and step >= max_steps else STOPPED
        rows.append({
            "trial": reported.get("trial_id") or Path(result.path).name,
            **{key: (result.config or {}).get(key) for key in spec.space},  # none when it failed at once
            "steps": step,
            f"final_{metric}": reported.get(metric),
            f"best_{metric}": (min(values) if spec.mode == "min" else max(values)) if values else None,
            "status": status,
            "node": reported.get("node"),
        })
    sign = 1 if spec.mode == "min" else -1
    rank = {FINISHED: 0, STOPPED: 1, FAILED: 2}
    rows.sort(key=lambda r: (rank[r["status"]], sign * _number(r[f"final_{metric}"], sign)))
    return rows


def _number(value, sign: int) -> float:
    return value if isinstance(value, (int, float)) and not math.isnan(value) else sign * math.inf


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_table(rows: list[dict], out_dir: Path) -> tuple[Path, Path]:
    columns = list(rows[0]) if rows else ["trial"]
    csv_path, md_path = out_dir / "results.csv", out_dir / "results.md"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in columns) + " |" for r in rows]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def write_best_config(rows: list[dict], spec: SweepSpec, out_dir: Path) -> Path | None:
    """The best trial's full training config, as a user would train it (`hieratok train --config`)."""
    if not rows or rows[0]["status"] == FAILED:
        return None
    best = rows[0]
    params = {key: best[key] for key in spec.space}
    path = out_dir / "best_config.yaml"
    header = (f"# best trial {best['trial']} of sweep '{spec.name}': {spec.metric}={_cell(best[f'final_{spec.metric}'])} "
              f"after {best['steps']} steps ({best['status']})\n# swept: {params}\n")
    path.write_text(header + to_yaml(spec.trial_config(params, for_trial=False)))
    return path
