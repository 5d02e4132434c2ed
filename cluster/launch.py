"""Submit training runs with submitit: to SLURM, or to this machine with submitit's local executor.

One task per GPU (tasks_per_node = gpus_per_node; CPU-only clusters say --tasks-per-node), each
task one rank of torch.distributed (cluster/slurm_env.py), each run requeued on timeout or
preemption (cluster/training_job.py). A job array runs several seeds or configs, one run dir each.
"""
from __future__ import annotations

import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from cluster.training_job import DEFAULT_TRAIN_FN, TrainingJob
from hieratok.config.errors import ConfigError
from hieratok.config.loader import load_config, resolve_preset_path

EXECUTORS = ("slurm", "local")


@dataclass
class Resources:
    nodes: int = 1
    max_nodes: int | None = None  # a node range MIN-MAX (nodes-max_nodes): SLURM gives what it can
    gpus_per_node: int = 0
    tasks_per_node: int | None = None  # default: gpus_per_node, or 1 without GPUs
    cpus_per_task: int | None = None
    partition: str | None = None
    time_min: int = 60
    account: str | None = None
    qos: str | None = None
    signal_delay_s: int = 90  # USR2 this long before the time limit: room to checkpoint
    max_requeues: int = 3
    mem: str | None = None  # per node, as sbatch --mem takes it (64G)
    constraint: str | None = None
    exclusive: bool = False
    slurm_opts: dict = field(default_factory=dict)  # any other sbatch option: name -> value (True: a bare flag)
    setup: list = field(default_factory=list)  # shell lines run in the sbatch script before srun

    def __post_init__(self):
        for flag, value in (("--nodes", self.nodes), ("--time", self.time_min), ("signal delay", self.signal_delay_s)):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        if self.max_nodes is not None and self.max_nodes < self.nodes:
            raise ConfigError(f"--nodes {self.nodes}-{self.max_nodes}: the range goes down; write "
                              f"{self.max_nodes}-{self.nodes}")
        if self.gpus_per_node < 0 or self.max_requeues < 0:
            raise ConfigError("--gpus-per-node and --max-requeues cannot be negative")
        if self.gpus_per_node and self.tasks_per_node not in (None, self.gpus_per_node):
            raise ConfigError(f"--tasks-per-node {self.tasks_per_node} disagrees with --gpus-per-node "
                              f"{self.gpus_per_node}: a job runs one task per GPU")
        if self.tasks_per_node is None:
            self.tasks_per_node = self.gpus_per_node or 1
        if self.tasks_per_node < 1 or (self.cpus_per_task is not None and self.cpus_per_task < 1):
            raise ConfigError("--tasks-per-node and --cpus-per-task must be at least 1")

    @property
    def node_count(self) -> str:
        """'2', or '1-2' for a range: what sbatch --nodes takes."""
        return str(self.nodes) if self.max_nodes in (None, self.nodes) else f"{self.nodes}-{self.max_nodes}"

    @property
    def world_size(self) -> str:
        """Ranks: '2', or '1-2' for a node range (the trainer resumes at whatever SLURM gave)."""
        if self.max_nodes in (None, self.nodes):
            return str(self.nodes * self.tasks_per_node)
        return f"{self.nodes * self.tasks_per_node}-{self.max_nodes * self.tasks_per_node}"


def parse_nodes(text: str) -> tuple[int, int | None]:
    """`--nodes 2` -> (2, None); `--nodes 1-2` (a SLURM node range) -> (1, 2)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not match:
        raise ConfigError(f"--nodes '{text}': give a count (2) or a SLURM node range MIN-MAX (1-2)")
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None


@dataclass
class RunSpec:
    """One run of a launch: its name in an array, its resolved config and its run dir."""
    name: str
    config: dict
    run_dir: Path


@dataclass
class LaunchPlan:
    runs: list[RunSpec]
    folder: Path  # submitit's folder: pickles, sbatch scripts, logs
    job_name: str
    resources: Resources
    train_fn: str = DEFAULT_TRAIN_FN


def parse_array(spec: str) -> tuple[str, list[str]]:
    """'0-3' / '0,2,5' -> ('seed', ['0','1',...]); 'a.yaml,b.yaml' -> ('config', paths)."""
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise ConfigError(f"--array '{spec}' is empty; give seeds (0-3 or 0,1,2) or config files (a.yaml,b.yaml)")
    if all(re.fullmatch(r"\d+(-\d+)?", s) for s in items):
        seeds: list[str] = []
        for s in items:
            lo, _, hi = s.partition("-")
            if hi and int(hi) < int(lo):
                raise ConfigError(f"--array range '{s}' goes down; write {hi}-{lo}")
            seeds.extend(str(n) for n in range(int(lo), int(hi or lo) + 1))
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"--array '{spec}' repeats a seed")
        return "seed", seeds
    for s in items:
        resolve_preset_path(s)  # names a missing file now, not on the cluster
    return "config", items


def _resolved(config_path: str | None, overrides: list[str]) -> dict:
    cfg = load_config(config_path, overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def plan_runs(config: str | None, overrides: list[str], array: str | None, run_dir: str | None) -> list[RunSpec]:
    """Resolve and validate every run's config here, so a bad key fails at submission, not in the queue."""
    if config is None and array is None:
        raise ConfigError("give --config FILE (or --array of config files)")
    if array is None:
        base = Path(run_dir) if run_dir else Path("runs") / Path(config).stem
        return [RunSpec("run", _resolved(config, overrides), base.resolve())]
    kind, items = parse_array(array)
    if kind == "seed" and config is None:
        raise ConfigError("--array of seeds needs --config FILE")
    if kind == "config" and config is not None:
        raise ConfigError("--array of config files replaces --config: give one or the other")
    base = Path(run_dir) if run_dir else Path("runs") / (Path(config).stem if config else "array")
    runs = []
    for item in items:
        if kind == "seed":
            runs.append(RunSpec(f"seed{item}", _resolved(config, [*overrides, f"train.seed={item}"]),
                                (base / f"seed{item}").resolve()))
        else:
            runs.append(RunSpec(Path(item).stem, _resolved(item, overrides), (base / Path(item).stem).resolve()))
    names = [r.name for r in runs]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ConfigError(f"--array configs share the file name(s) {clashes}: their run dirs would clash")
    return runs


def _job_name(runs: list[RunSpec], run_dir: str | None, config: str | None) -> str:
    stem = Path(run_dir).name if run_dir else Path(config or runs[0].name).stem
    return "hieratok-" + (re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "run")  # no quoting games in #SBATCH lines


def make_plan(config: str | None, overrides: list[str], resources: Resources, array: str | None = None,
              run_dir: str | None = None, train_fn: str = DEFAULT_TRAIN_FN) -> LaunchPlan:
    runs = plan_runs(config, overrides, array, run_dir)
    folder = (runs[0].run_dir.parent if array else runs[0].run_dir) / "submitit"
    return LaunchPlan(runs=runs, folder=folder, job_name=_job_name(runs, run_dir, config),
                      resources=resources, train_fn=train_fn)


def slurm_parameters(plan: LaunchPlan) -> dict:
    """submitit's SlurmExecutor parameters (SLURM's own names), used to submit and to --dry-run alike."""
    r = plan.resources
    params = {
        "job_name": plan.job_name,
        "time": r.time_min,
        "nodes": r.node_count,
        "ntasks_per_node": r.tasks_per_node,
        "signal_delay_s": r.signal_delay_s,
        "additional_parameters": {"requeue": True},
    }
    optional = {"cpus_per_task": r.cpus_per_task, "gpus_per_node": r.gpus_per_node or None,
                "partition": r.partition, "account": r.account, "qos": r.qos, "mem": r.mem,
                "constraint": r.constraint, "exclusive": r.exclusive or None, "setup": list(r.setup) or None}
    params.update({k: v for k, v in optional.items() if v is not None})
    if r.node_count != str(r.nodes):
        params.update(_node_range_tasks(r))
        del params["ntasks_per_node"]
    for key, value in r.slurm_opts.items():  # submitit's own parameter where it has one, else passed through
        if key in _submitit_parameters():
            params[key] = value
        else:
            params["additional_parameters"][key] = value
    return params


def _node_range_tasks(r: Resources) -> dict:
    """Under a node range, sbatch must not get --ntasks-per-node: SLURM then sets the job's task count to
    MIN x tasks a node and allocates only the nodes those need (measured on slurm 22.05, cons_tres).
    Without it SLURM gives one task a node and as many nodes as it can; the CPUs of a node's tasks are
    asked for as that one task's, and srun starts the tasks a node."""
    cpus = r.cpus_per_task or 1
    params: dict = {"srun_args": [f"--ntasks-per-node={r.tasks_per_node}"]}
    if r.tasks_per_node > 1:
        params["cpus_per_task"] = r.tasks_per_node * cpus
        params["srun_args"].append(f"--cpus-per-task={cpus}")
    return params


def _submitit_parameters() -> set[str]:
    import inspect

    from submitit.slurm.slurm import _make_sbatch_string

    return set(inspect.signature(_make_sbatch_string).parameters) - {"command", "folder", "map_count",
                                                                      "additional_parameters"}


def parse_slurm_opts(items: list[str]) -> dict:
    """`--slurm-opt KEY=VALUE` (or a bare `KEY` for a flag) -> {key_with_underscores: value}."""
    opts = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not key or (eq and not value):
            raise ConfigError(f"--slurm-opt {item!r}: expected KEY=VALUE (an sbatch option, e.g. mail-type=END) "
                              f"or a bare KEY for a flag")
        opts[key] = value if eq else True
    return opts


def submitit_command(folder: Path) -> str:
    """The command the sbatch script runs under srun (what SlurmExecutor itself builds)."""
    return " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])


def sbatch_script(plan: LaunchPlan) -> str:
    """The sbatch script submitit would submit for this plan (submitit writes it the same way)."""
    from submitit.slurm.slurm import _make_sbatch_string

    array = len(plan.runs) if len(plan.runs) > 1 else None
    return _make_sbatch_string(command=submitit_command(plan.folder), folder=plan.folder, map_count=array,
                               **slurm_parameters(plan))


def _slurm_executor_class():
    import submitit

    class NodeRangeSlurmExecutor(submitit.SlurmExecutor):
        """submitit's SlurmExecutor, which counts a job's tasks as nodes x tasks a node to know whose
        results to wait for; under a node range MIN-MAX only the first MIN nodes' tasks surely run."""

        def _num_tasks(self) -> int:
            least_nodes = int(str(self.parameters.get("nodes", 1)).split("-")[0])
            return least_nodes * max(1, self.parameters.get("ntasks_per_node", 1))

    return NodeRangeSlurmExecutor


def make_executor(kind: str, plan: LaunchPlan):
    import submitit

    r = plan.resources
    if kind == "slurm":
        if shutil.which("sbatch") is None or shutil.which("srun") is None:
            raise ConfigError("--executor slurm needs SLURM's sbatch and srun on this machine; start a test "
                              "cluster with `sudo cluster/slurm_testbed.sh`, or use --executor local")
        executor = _slurm_executor_class()(folder=plan.folder, max_num_timeout=r.max_requeues)
        executor.update_parameters(**slurm_parameters(plan))
        return executor
    if kind == "local":
        if r.node_count != "1":
            raise ConfigError(f"--executor local runs on this machine only: --nodes must be 1, got {r.node_count}")
        executor = submitit.LocalExecutor(folder=plan.folder, max_num_timeout=r.max_requeues)
        executor.update_parameters(timeout_min=r.time_min, tasks_per_node=r.tasks_per_node,
                                   gpus_per_node=r.gpus_per_node, signal_delay_s=r.signal_delay_s)
        return executor
    raise ConfigError(f"unknown executor '{kind}'; valid executors: {', '.join(EXECUTORS)}")


def submit(kind: str, plan: LaunchPlan) -> list:
    """Submit every run of the plan (an array when there are several); returns submitit Jobs."""
    executor = make_executor(kind, plan)
    jobs_to_run = [TrainingJob(run.config, str(run.run_dir), plan.resources.max_requeues, plan.train_fn)
                   for run in plan.runs]
    for run in plan.runs:
        run.run_dir.mkdir(parents=True, exist_ok=True)
    if len(jobs_to_run) == 1:
        return [executor.submit(jobs_to_run[0])]
    with executor.batch():  # one SLURM job array
        jobs = [executor.submit(j) for j in jobs_to_run]
    return jobs
