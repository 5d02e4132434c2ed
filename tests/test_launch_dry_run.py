"""`hieratok launch --dry-run` prints the sbatch script it would submit; bad input is named clearly."""
import pytest

from hieratok.cli import main

CONFIG = "configs/tokenizer/tiny_single.yaml"


def dry_run(capsys, *args):
    code = main(["launch", "--config", CONFIG, "--executor", "slurm", "--dry-run", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def sbatch_flags(script: str) -> dict:
    flags = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line.removeprefix("#SBATCH --").partition("=")
            flags[key] = value
    return flags


def test_one_task_per_gpu_and_requeue_on_the_timeout_signal(capsys, tmp_path):
    code, script, _ = dry_run(capsys, "--nodes", "2", "--gpus-per-node", "4", "--cpus-per-task", "8",
                              "--partition", "gpu", "--time", "240", "--account", "proj", "--qos", "high",
                              "--run-dir", str(tmp_path / "run"))
    assert code == 0 and script.startswith("#!/bin/bash")
    flags = sbatch_flags(script)
    assert flags["nodes"] == "2" and flags["ntasks-per-node"] == "4" and flags["gpus-per-node"] == "4"
    assert flags["cpus-per-task"] == "8" and flags["partition"] == "gpu" and flags["time"] == "240"
    assert flags["account"] == "proj" and flags["qos"] == "high"
    assert flags["signal"] == "USR2@90" and "requeue" in flags
    assert "srun" in script and "submitit.core._submit" in script and str(tmp_path / "run" / "submitit") in script
    assert not (tmp_path / "run").exists(), "a dry run creates nothing"


def test_cpu_only_cluster_uses_tasks_per_node(capsys, tmp_path):
    code, script, _ = dry_run(capsys, "--tasks-per-node", "2", "--run-dir", str(tmp_path / "r"))
    flags = sbatch_flags(script)
    assert code == 0 and flags["ntasks-per-node"] == "2" and "gpus-per-node" not in flags


def test_a_node_range_reaches_sbatch_and_srun_starts_the_tasks_a_node(capsys, tmp_path):
    """--nodes MIN-MAX: SLURM starts the job on as many nodes as it can give, a requeued one on what is
    left. sbatch gets no --ntasks-per-node (with it SLURM allocates only MIN nodes): one task a node
    holds the CPUs of all of the node's tasks, and srun starts them."""
    code, script, _ = dry_run(capsys, "--nodes", "1-4", "--gpus-per-node", "8", "--cpus-per-task", "4",
                              "--run-dir", str(tmp_path / "r"))
    flags = sbatch_flags(script)
    assert code == 0 and flags["nodes"] == "1-4" and "ntasks-per-node" not in flags
    assert flags["cpus-per-task"] == "32" and flags["gpus-per-node"] == "8"
    assert "--ntasks-per-node=8 --cpus-per-task=4 " in script.splitlines()[-1]


def test_array_over_seeds_gets_one_run_dir_each(capsys, tmp_path):
    code, script, err = dry_run(capsys, "--array", "0-2,5", "--run-dir", str(tmp_path / "seeds"))
    assert code == 0 and sbatch_flags(script)["array"] == "0-3%4"
    for index, seed in enumerate((0, 1, 2, 5)):
        assert f"seed{seed} (array index {index}): run dir {tmp_path / 'seeds' / f'seed{seed}'}" in err


def test_array_over_configs(capsys, tmp_path):
    code = main(["launch", "--executor", "slurm", "--dry-run", "--run-dir", str(tmp_path / "cmp"), "--array",
                 "configs/tokenizer/tiny_single.yaml,configs/tokenizer/tiny_hieratok.yaml"])
    out = capsys.readouterr()
    assert code == 0 and sbatch_flags(out.out)["array"] == "0-1%2"
    assert "tiny_single (array index 0): run dir" in out.err and "tiny_hieratok (array index 1): run dir" in out.err


@pytest.mark.parametrize("args, message", [
    (["--gpus-per-node", "4", "--tasks-per-node", "2"], "one task per GPU"),
    (["--array", "0,0"], "repeats a seed"),
    (["--array", "3-1"], "goes down"),
    (["--array", "missing.yaml"], "config file not found: missing.yaml"),
    (["train.max_stepz=3"], "unknown config key 'train.max_stepz'"),
    (["--time", "0"], "--time must be at least 1"),
    (["--nodes", "2-1"], "--nodes 2-1: the range goes down; write 1-2"),
    (["--nodes", "two"], "--nodes 'two': give a count (2) or a SLURM node range MIN-MAX (1-2)"),
    (["--array", "configs/tokenizer/tiny_hieratok.yaml"], "--array of config files replaces --config"),
])
def test_bad_input_is_named(capsys, args, message):
    code, _, err = dry_run(capsys, *args)
    assert code == 2 and message in err


def test_real_cluster_options_reach_the_sbatch_script(capsys, tmp_path):
    code, script, _ = dry_run(capsys, "--gpus-per-node", "8", "--mem", "256G", "--constraint", "h100", "--exclusive",
                              "--slurm-opt", "mail-type=END", "--slurm-opt", "gres=gpu:8", "--slurm-opt", "reservation=rsv",
                              "--setup", "module load cuda/12.4", "--setup", "source /opt/env.sh",
                              "--run-dir", str(tmp_path / "r"))
    assert code == 0
    flags = sbatch_flags(script)
    assert flags["mem"] == "256G" and flags["constraint"] == "h100" and "exclusive" in flags
    assert flags["mail-type"] == "END" and flags["gres"] == "gpu:8" and flags["reservation"] == "rsv"
    setup_at, srun_at = script.index("module load cuda/12.4"), script.index("srun")
    assert setup_at < script.index("source /opt/env.sh") < srun_at  # in order, before the tasks start


def test_bad_cluster_options_are_named(capsys, tmp_path):
    code, _, err = dry_run(capsys, "--slurm-opt", "=oops", "--run-dir", str(tmp_path / "r"))
    assert code == 2 and "--slurm-opt '=oops'" in err
    code = main(["launch", "--config", CONFIG, "--executor", "local", "--dry-run", "--mem", "8G",
                 "--run-dir", str(tmp_path / "r")])
    assert code == 2 and "--mem apply to --executor slurm only" in capsys.readouterr().err
