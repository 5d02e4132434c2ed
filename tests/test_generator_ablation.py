"""Generator convergence across a tokenizer ablation's arms: the steps-to-target arithmetic, and
`hieratok ablate` on a `task: generator` file end to end (quick) on Ray."""
import json
import subprocess
import sys

import pytest
import torch

from hieratok.config.errors import ConfigError
from hieratok.eval.convergence import convergence_table, steps_to_reach
from train_runs import REPO, env


def _curve(rate: float, steps: int = 400) -> list[tuple[int, float]]:
    return [(s, 1.0 / (1.0 + rate * s)) for s in range(10, steps + 1, 10)]


def test_an_arm_that_learns_twice_as_fast_has_speedup_two():
    curves = {"ref": {0: _curve(0.01)}, "fast": {0: _curve(0.02)}}
    table = convergence_table(curves, "ref", window=1)
    # the target is the loss every run reaches: the reference's final one, reached by `fast` at half the steps
    assert table["target_loss"] == pytest.approx(1 / (1 + 0.01 * 400))
    assert table["arms"]["ref"]["mean_steps"] == 400 and table["arms"]["fast"]["mean_steps"] == 200
    assert table["arms"]["fast"]["speedup_vs_reference"] == pytest.approx(2.0)
    assert steps_to_reach(_curve(0.01), 0.0, window=1) is None  # never reached


def test_smoothing_ignores_a_single_lucky_step():
    curve = [(10, 1.0), (20, 0.1), (30, 1.0), (40, 0.5), (50, 0.4), (60, 0.45)]
    assert steps_to_reach(curve, 0.5, window=1) == 20
    assert steps_to_reach(curve, 0.5, window=3) == 60  # means: 1.0, .55, .7, .53, .63, .45


@pytest.mark.timeout(900)
def test_quick_generator_ablation_on_a_tokenizer_ablations_arms(tmp_path, embedded_mds):
    from hieratok.config.loader import load_config
    from hieratok.tokenizer.model import Tokenizer

    tokenizers = tmp_path / "tokenizer_ablation"
    arms = {"single-scale": "tiny_single", "hieratok-latent-all": "tiny_hieratok_all"}
    for arm, preset in arms.items():  # trained tokenizers stand-ins: the plumbing is under test
        torch.manual_seed(0)
        Tokenizer(load_config(f"configs/tokenizer/{preset}.yaml").model).save_pretrained(
            tokenizers / "runs" / arm / "seed0" / "export")
    (tokenizers / "results.json").write_text(json.dumps({"arms": {a: {} for a in arms},
                                                         "protocol": {"data": str(embedded_mds)}}))
    spec = tmp_path / "gen.yaml"
    spec.write_text(f"name: t\ntask: generator\ntokenizers: {tokenizers}\nconfig: {REPO}/configs/generator/tiny.yaml\n"
                    "overrides: [data.num_workers=0, train.min_lr_ratio=1.0]\nsmoothing_window: 2\n"
                    "quick: {seeds: [0], overrides: [train.max_steps=12, train.warmup_steps=1, logging.every_steps=2]}\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "hieratok", "ablate", "--config", str(spec), "--quick", "--out", str(out)],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=800)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    results = json.loads((out / "results.json").read_text())
    assert list(results["arms"]) == list(arms) and results["reference_arm"] == "single-scale"
    for arm in arms:
        row = results["arms"][arm]
        assert row["steps_to_target"]["tok0/seed0"] is not None and row["speedup_vs_reference"] > 0
        assert (out / "runs" / arm / "tok0" / "seed0" / "done.json").exists()
    assert results["arms"]["single-scale"]["speedup_vs_reference"] == 1.0
    # each arm's generator modelled its own tokenizer's latent: 64 x 8 grid tokens, 85 x 6 multi-scale ones
    shapes = {arm: json.loads((out / "caches" / arm / "tok0" / "latent_stats.json").read_text())["latent_shape"] for arm in arms}
    assert shapes == {"single-scale": [64, 8], "hieratok-latent-all": [85, 6]}
    assert (out / "loss_curves.png").stat().st_size > 0 and "| hieratok-latent-all |" in (out / "report.md").read_text()


def test_each_arm_runs_on_every_tokenizer_seed_and_quick_takes_the_first(tmp_path):
    from cluster.generator_ablation import load_generator_ablation

    tokenizers = tmp_path / "tokenizer_ablation"
    tokenizers.mkdir()
    (tokenizers / "results.json").write_text(json.dumps({"arms": {"a": {}, "b": {}}, "protocol": {"data": "x"}}))
    spec_file = tmp_path / "gen.yaml"

    def load(seeds_line: str):
        spec_file.write_text(f"task: generator\ntokenizers: {tokenizers}\nconfig: {REPO}/configs/generator/tiny.yaml\n"
                             f"{seeds_line}\nseeds: [0, 1]\n")
        return load_generator_ablation(spec_file)

    spec = load("tokenizer_seeds: [0, 2]")
    assert spec.run_labels() == [(arm, f"tok{t}/seed{s}") for arm in "ab" for t in (0, 2) for s in (0, 1)]
    assert spec.export_of("b", 2) == tokenizers / "runs" / "b" / "seed2" / "export"
    assert spec.narrowed(True, None, None).run_labels() == [("a", "tok0/seed0"), ("b", "tok0/seed0")]
    with pytest.raises(ConfigError, match="tokenizer_seeds must be a non-empty list"):
        load("tokenizer_seeds: []")
    with pytest.raises(ConfigError, match="tokenizer_seed"):  # the old single-seed key is named, not ignored
        load("tokenizer_seed: 1")
