"""`hieratok ablate --quick` end to end on Ray: arms x seeds as real runs, scores beside the floors,
results.json / report.md, and a rerun after a kill that finishes only what was unfinished."""
import json
import shutil
import subprocess
import sys

import pytest

from train_runs import REPO, env

SPEC = """\
name: test
config: {config}
data: {{path: {data}}}
arms:
  single-scale: []
  hieratok: ["model.scales=[1,2,4,8]"]
  registers: [model.registers=21]
seeds: [0, 1]
overrides: [train.global_batch_size=8, train.micro_batch_size=8, data.num_workers=0]
eval: {{num_images: 16, metrics: [psnr, ssim, lpips, rfid], fit_images: 64}}
runs: {{cpus_per_worker: 1, max_concurrent: 2}}
quick:
  arms: [single-scale, hieratok]
  seeds: [0]
  overrides: [train.max_steps=4, train.warmup_steps=1, checkpoint.every_steps=2]
  num_images: 16
  fit_images: 64
"""


def _ablate(spec, out, *extra):
    proc = subprocess.run([sys.executable, "-m", "hieratok", "ablate", "--config", str(spec), "--quick",
                           "--out", str(out), *extra], cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"ablate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    # the trials free their loaders' shared memory: no resource-tracker KeyError per segment at the workers' exit
    assert "KeyError" not in proc.stderr, proc.stderr[-5000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.timeout(1200)
def test_quick_ablation_scores_every_run_and_a_rerun_finishes_only_the_unfinished(tmp_path, embedded_mds):
    spec = tmp_path / "ablation.yaml"
    spec.write_text(SPEC.format(config=REPO / "configs" / "tokenizer" / "tiny_single.yaml", data=embedded_mds))
    out = tmp_path / "out"
    results = _ablate(spec, out)

    assert list(results["arms"]) == ["single-scale", "hieratok"] and results["reference_arm"] == "single-scale"
    for arm, a in results["arms"].items():
        scores = a["seeds"]["0"]
        assert a["n"] == 1 and a["missing"] == [] and a["std"]["psnr"] == 0.0
        assert 5 < scores["psnr"] < 60 and 0 < scores["ssim"] <= 1 and scores["num_images"] == 16
        assert scores["rfid"] > 0 and scores["lpips"] > 0
        assert scores["train_flops_per_image"] > 0 and scores["latent_shape"] == [64, 8]
        assert scores["train_seconds"] > 0  # from metrics.jsonl: a resumed trial's total, not its last part
    drop = {arm: a["seeds"]["0"]["mechanism"]["psnr_drop"] for arm, a in results["arms"].items()}
    assert drop["single-scale"] == 0.0 and drop["hieratok"] != 0.0  # no coarse tokens to zero in the baseline
    flops = {arm: a["mean"]["train_gflops_per_image"] for arm, a in results["arms"].items()}
    assert flops["hieratok"] > flops["single-scale"]
    for name in ("patch_pca", "bicubic"):
        assert results["baselines"][name]["num_images"] == 16 and results["baselines"][name]["psnr"] > 10
    assert results["baselines"]["patch_pca"]["values"] == 512 and results["protocol"]["quick"] is True
    assert "TEST-MADE" in results["protocol"]["scoring_weights"] and (out / "reference_stats.npz").exists()
    assert results["above_floor"] == {"single-scale": False, "hieratok": False}  # 4 steps learn nothing
    report = (out / "report.md").read_text()
    assert "| hieratok |" in report and "patch_pca (baseline)" in report and "psnr.png" in report
    assert "does NOT beat" in report and "one seed: no seed spread" in report

    # a killed ablation: one run lost its export and scores after its step-2 checkpoint, one is done
    done = out / "runs" / "single-scale" / "seed0"
    killed = out / "runs" / "hieratok" / "seed0"
    done_metrics = (done / "metrics.jsonl").read_text()
    shutil.rmtree(killed / "export")
    (killed / "scores.json").unlink()
    for step_dir in (killed / "checkpoints").glob("step_*"):
        if step_dir.name != "step_00000002":
            shutil.rmtree(step_dir)
    (killed / "checkpoints" / "latest").write_text("step_00000002\n")
    reference_written = (out / "reference_stats.npz").stat().st_mtime_ns
    again = _ablate(spec, out)
    assert (out / "reference_stats.npz").stat().st_mtime_ns == reference_written  # same images: reused
    assert (done / "metrics.jsonl").read_text() == done_metrics  # finished: not trained again
    events = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "resumed" and e["path"].endswith("step_00000002") for e in events)
    assert again["arms"]["single-scale"]["seeds"]["0"] == results["arms"]["single-scale"]["seeds"]["0"]
    assert again["arms"]["hieratok"]["n"] == 1 and again["arms"]["hieratok"]["seeds"]["0"]["train_seconds"] > 0


def test_bad_ablation_files_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("config: configs/tokenizer/tiny_single.yaml\ndata: {path: x}\narms: {a: [model.scales=[1,8]]}\n")
    proc = subprocess.run([sys.executable, "-m", "hieratok", "ablate", "--config", str(bad), "--quick"],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "is not valid YAML" in proc.stderr and "Traceback" not in proc.stderr
    bad.write_text("config: configs/tokenizer/tiny_single.yaml\ndata: {path: x}\narms: {a: [model.scalez=1]}\n")
    proc = subprocess.run([sys.executable, "-m", "hieratok", "ablate", "--config", str(bad), "--quick"],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "model.scalez" in proc.stderr and "Traceback" not in proc.stderr


def test_the_runs_bar_counts_finished_and_failed_runs_and_survives_tunes_pickling():
    import io
    import pickle

    from cluster.ablation import runs_done_bar

    out = io.StringIO()
    callback = runs_done_bar(3, "cpu", file=out)
    assert pickle.loads(pickle.dumps(callback)).bar is None  # Tune pickles its run config
    callback.setup()
    callback.on_trial_complete(0, [], None)
    callback.on_trial_error(1, [], None)  # a failed run is done too: the bar reaches its total
    callback.on_trial_complete(2, [], None)
    callback.on_experiment_end([])
    assert "cpu runs" in out.getvalue() and "3/3" in out.getvalue(), out.getvalue()


@pytest.mark.parametrize("arms", [None, ["batch8"]])
def test_quick_takes_a_few_steps_even_where_an_arm_sets_its_own_step_count(arms):
    from cluster.ablation_spec import load_ablation

    spec = load_ablation("configs/ablations/cpu_batch.yaml")
    assert spec.run_config("batch16", 0).train.max_steps == 1000
    quick = spec.narrowed(True, None, arms)
    assert list(quick.arms) == (arms or ["batch16", "batch4"])
    for arm in quick.arms:
        cfg = quick.run_config(arm, 0)
        assert cfg.train.max_steps == 10
        assert cfg.train.global_batch_size == {"batch16": 16, "batch8": 8, "batch4": 4}[arm]  # the arm's own keys stay


def test_the_costliest_arms_start_first_and_the_cheapest_end_the_ablation():
    from cluster.ablation import costliest_first
    from cluster.ablation_spec import load_ablation

    spec = load_ablation("configs/ablations/cpu.yaml")
    order = costliest_first(spec, "unused")
    assert sorted(order) == sorted((arm, seed) for arm in spec.arms for seed in spec.seeds)
    assert order[-3:] == [("single-scale", 0), ("single-scale", 1), ("single-scale", 2)]  # the fewest tokens
    assert order[0][0] != "single-scale"


def test_tune_starts_the_trials_in_the_order_given(tmp_path):
    import ray

    from cluster.ablation import run_grid

    log = str(tmp_path / "started.txt")

    def trial(params):
        with open(log, "a") as f:
            f.write(f"{params['run']['arm']}/{params['run']['seed']}\n")

    runs = [("c", 1), ("a", 0), ("b", 2)]  # neither sorted nor arm x seed
    try:
        failed = run_grid(trial, {"cpu": 1}, runs, 1, tmp_path, "order", None)
    finally:
        ray.shutdown()
    assert failed == []
    assert (tmp_path / "started.txt").read_text().split() == ["c/1", "a/0", "b/2"]
