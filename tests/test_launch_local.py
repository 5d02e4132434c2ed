"""`hieratok launch --executor local`: submitit's local executor on this machine, here as a job array
over seeds, one run dir each (no SLURM needed)."""
import subprocess
import sys

from hieratok.metrics_file import read_metrics
from hieratok.config.loader import load_config


def test_local_array_over_seeds_trains_one_run_each(embedded_mds, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "hieratok", "launch", "--config", "configs/tokenizer/tiny_single.yaml",
         "--executor", "local", "--array", "0,7", "--run-dir", str(tmp_path / "seeds"), f"data.path={embedded_mds}",
         "train.max_steps=2", "logging.every_steps=1", "logging.progress=false"],
        capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    losses = {}
    for seed in (0, 7):
        run_dir = tmp_path / "seeds" / f"seed{seed}"
        assert f"(seed{seed}) finished at step 2 after 0 requeue(s): {run_dir}" in out.stdout
        assert load_config(run_dir / "config.yaml").train.seed == seed
        losses[seed] = [r["loss"] for r in read_metrics(run_dir)]
    assert len(losses[0]) == 2 and losses[0] != losses[7]
