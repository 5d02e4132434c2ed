"""`hieratok launch --executor slurm` on the real SLURM testbed, training the tiny tokenizer: a 2-node
job (one task a node) interrupted twice mid-training (the timeout signal, then `scontrol requeue`)
checkpoints, is requeued, resumes, and ends with exactly the trace of an uninterrupted 2-process
torchrun run on one machine (so it is DDP on gloo as torchrun runs it); `launch --wait` reports both
requeues, the one SLURM did by itself too; config values full of shell metacharacters reach the job
unchanged."""
import re
import subprocess
import sys

import pytest

from hieratok.metrics_file import read_metrics
from cluster.requeue_count import count_resumed_events
from hieratok.config.loader import load_config
from slurm_cluster import (  # noqa: F401
    job_nodes, job_state, slurm_cluster, two_slurm_nodes, wait_for_final_state, wait_until)

pytestmark = pytest.mark.slurm

CONFIG = "configs/tokenizer/tiny_single.yaml"
MAX_STEPS = 40
# The test waits on events (steps in metrics.jsonl, job states), not on a step time; 40 steps leave
# 30-odd steps of room after each interruption is sent, and an interruption that came too late to
# land fails the test (too few stops in the log) rather than passing it.
GLOBAL_BATCH = 64
TIMING_KEYS = {"images_per_s", "data_wait_fraction", "train_seconds"}  # wall-clock figures differ run to run
STRANGE = "a b; echo $(id) 'q' \"dq\" `tick` & | > < * ? ~ \\ %j %t"


def overrides(data) -> list[str]:
    return [f"data.path={data}", f"train.max_steps={MAX_STEPS}", f"train.global_batch_size={GLOBAL_BATCH}",
            "logging.every_steps=1", "logging.progress=false"]


def trace(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_metrics(run_dir)]


@pytest.fixture(scope="module")
def torchrun_reference(embedded_mds, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("torchrun") / "run"
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    "-m", "hieratok", "train", "--config", CONFIG, "--run-dir", str(run_dir), *overrides(embedded_mds)],
                   check=True, capture_output=True, timeout=400)
    return trace(run_dir)


LAYOUT = ["--nodes", "2", "--tasks-per-node", "1", "--time", "10"]


def launch_on_two_nodes(run_dir, data, *extra) -> tuple[subprocess.Popen, str]:
    """`hieratok launch ... --wait` in the background; returns it and the SLURM job id it printed."""
    cli = subprocess.Popen([sys.executable, "-m", "hieratok", "launch", "--config", CONFIG, "--executor", "slurm",
                            *LAYOUT, "--run-dir", str(run_dir), "--wait", *overrides(data), *extra],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = cli.stdout.readline()
    match = re.match(r"submitted SLURM job (\d+) \(2 task\(s\) on 2 node\(s\)\)", first)
    assert match, first + cli.communicate(timeout=60)[0]
    return cli, match.group(1)


@pytest.fixture(scope="module")
def interrupted_run(two_slurm_nodes, embedded_mds, tmp_path_factory):
    """One 2-node job, interrupted twice mid-training: first by the time-limit signal (the trainer
    checkpoints, then submitit's handler calls checkpoint() and requeues the job), then by
    `scontrol requeue`, as an operator or a preemption does (SIGTERM: the trainer checkpoints and
    SLURM requeues the job itself). Its run dir has a space, a config value every shell metacharacter."""
    run_dir = tmp_path_factory.mktemp("slurm") / "run dir with spaces"
    cli, job_id = launch_on_two_nodes(run_dir, embedded_mds, f"logging.wandb.name={STRANGE}")
    steps = lambda: len(read_metrics(run_dir))  # noqa: E731

    wait_until(lambda: steps() >= 4, 240, "the job to train 4 steps")
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    wait_until(lambda: job_state(job_id) in ("REQUEUED", "PENDING"), 120, "the requeue after USR2")
    first_stop = steps()
    wait_until(lambda: steps() >= first_stop + 4, 240, "the requeued job to train on")
    subprocess.run(["scontrol", "requeue", job_id], check=True)

    output = cli.communicate(timeout=400)[0]
    assert cli.returncode == 0, output
    return run_dir, job_id, output


def test_two_node_job_trains_like_torchrun(interrupted_run, torchrun_reference, two_slurm_nodes):
    run_dir, job_id, _ = interrupted_run
    assert wait_for_final_state(job_id, timeout_s=120) == "COMPLETED"  # tasks exit a little after their results
    assert job_nodes(job_id) == ["testbed[1-2]"] * 3  # each of its three starts on both nodes
    assert len(torchrun_reference) == MAX_STEPS
    assert trace(run_dir) == torchrun_reference  # every step's loss, lr, grad norm, samples seen


def test_interrupted_job_checkpoints_requeues_and_resumes(interrupted_run):
    run_dir, job_id, output = interrupted_run
    # one requeue went through checkpoint(), the other through SLURM itself: both are reported,
    # as sacct (not the run dir fallback) counts them, and both resumed from a checkpoint
    assert f"job {job_id} (run) finished at step {MAX_STEPS} after 2 requeue(s)" in output
    assert "requeue count of job" not in output, output
    states = subprocess.run(["sacct", "--duplicates", "-n", "-X", "-P", "-j", job_id, "-o", "State"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert states[:2] == ["REQUEUED", "REQUEUED"] and len(states) == 3, states
    assert count_resumed_events(run_dir) == 2
    rank1_log = (run_dir / "submitit" / f"{job_id}_1_log.out").read_text()
    rank1_err = (run_dir / "submitit" / f"{job_id}_1_log.err").read_text()
    stops = [int(s) for s in re.findall(r"hieratok train: rank 1: preempted at step (\d+)", rank1_err)]
    assert len(stops) == 2 and 0 < stops[0] < stops[1] < MAX_STEPS, rank1_err
    assert rank1_log.count("Starting with JobEnvironment") == 3


def test_config_values_with_shell_metacharacters_reach_the_job_unchanged(interrupted_run):
    run_dir, _, _ = interrupted_run
    assert load_config(CONFIG, [f"logging.wandb.name={STRANGE}"]).logging.wandb.name == STRANGE
    assert load_config(run_dir / "config.yaml").logging.wandb.name == STRANGE


def test_the_dry_run_shows_the_script_slurm_was_given(interrupted_run, embedded_mds):
    """`--dry-run` renders through submitit's own sbatch writer, which has no public name: this pins it
    to the file submitit really submitted for the same launch."""
    run_dir, job_id, _ = interrupted_run
    submitted = (run_dir / "submitit" / f"{job_id}_submission.sh").read_text()
    dry = subprocess.run([sys.executable, "-m", "hieratok", "launch", "--config", CONFIG, "--executor", "slurm",
                          *LAYOUT, "--run-dir", str(run_dir), "--dry-run",
                          *overrides(embedded_mds)], capture_output=True, text=True, timeout=120, check=True).stdout
    assert submitted.rstrip("\n") in dry, (submitted, dry)
