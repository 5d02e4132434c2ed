"""The model card (README.md) written into every export: what the model is, how it was trained, and
its latest held-out metrics with their protocol, read from the export's config.json and the run's
metrics.jsonl. The Hub shows it as the repo's page."""
from __future__ import annotations

import json
from pathlib import Path

from hieratok.metrics_file import read_records


def write_model_card(export_dir: str | Path, run_dir: str | Path | None = None) -> Path:
    export_dir = Path(export_dir)
    config = json.loads((export_dir / "config.json").read_text())
    records = read_records(Path(run_dir) / "metrics.jsonl") if run_dir is not None else []
    steps = [r for r in records if "loss" in r and "event" not in r]
    evals = [r for r in records if r.get("event") == "eval"]
    kind = "generator" if str(config.get("format", "")).startswith("hieratok-generator") else "tokenizer"
    lines = ["---", "library_name: hieratok", "tags: [hieratok, image-tokenizer]" if kind == "tokenizer"
             else "tags: [hieratok, latent-generator, flow-matching]", "---", "",
             f"# HieraTok {kind}", "",
             f"Format `{config.get('format')}`, {config.get('weights', 'raw')} weights"
             + (f", from step {config['step']}" if "step" in config else "") + ". Load it with:", "",
             "```python",
             f"from hieratok import {'Generator' if kind == 'generator' else 'Tokenizer'}",
             f"model = {'Generator' if kind == 'generator' else 'Tokenizer'}.from_pretrained(\"THIS_FOLDER_OR_REPO_ID\")",
             "```", "", "## Training", ""]
    if steps:
        last = steps[-1]
        lines.append(f"{last['step']} optimizer steps, {last.get('samples_seen', '?')} samples; last logged loss "
                     f"{last['loss']:.5f}.")
    else:
        lines.append("No training record beside this export.")
    lines += ["", "## Held-out metrics", ""]
    if evals:
        e = evals[-1]
        metrics = {k.removeprefix("eval/"): v for k, v in e.items() if k.startswith("eval/")}
        lines += ["| metric | value |", "|---|---|", *[f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                                                     for k, v in metrics.items()],
                  "", f"Protocol: the periodic evaluation at step {e['step']} on split `{e.get('split', 'val')}` "
                      f"({metrics.get('num_images', '?')} images, centre crop, posterior mean; rFID and LPIPS "
                      f"with the weights the run was given)."]
    else:
        lines.append("None recorded during training (`eval.every_steps: 0`); score it with `hieratok eval`.")
    lines += ["", "## Config", "", "```json", json.dumps(config, indent=1, sort_keys=True), "```", ""]
    card = export_dir / "README.md"
    tmp = card.with_name(".README.md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(card)
    return card
