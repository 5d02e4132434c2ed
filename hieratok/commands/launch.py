"""`hieratok launch`: submit training to SLURM (or run it here) with submitit, requeued on timeout
or preemption. `--dry-run` prints the sbatch script instead of submitting it."""
from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("--config", help="preset or run config YAML (optional when --array lists config files)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. train.max_steps=1000")
    p.add_argument("--executor", choices=("slurm", "local"), required=True,
                   help="slurm: sbatch through submitit; local: submitit's local executor on this machine")
    p.add_argument("--nodes", default="1", metavar="N|MIN-MAX",
                   help="nodes (default 1), or a range MIN-MAX: the job starts on what SLURM can give, and a "
                        "requeued job on what is left (the trainer resumes at that world size)")
    p.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node; one task (rank) per GPU")
    p.add_argument("--tasks-per-node", type=int, default=None,
                   help="tasks (ranks) per node without GPUs, e.g. on CPU-only clusters (default: GPUs per node, or 1)")
    p.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per task (default: SLURM's)")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--time", type=int, default=60, help="time limit in minutes (default 60); "
                   "the job checkpoints and requeues itself before it")
    p.add_argument("--account", default=None, help="SLURM account")
    p.add_argument("--qos", default=None, help="SLURM quality of service")
    p.add_argument("--mem", default=None, help="memory per node, as sbatch takes it (e.g. 256G)")
    p.add_argument("--constraint", default=None, help="node features (sbatch --constraint, e.g. a100)")
    p.add_argument("--exclusive", action="store_true", help="whole nodes (sbatch --exclusive)")
    p.add_argument("--slurm-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, repeatable (e.g. --slurm-opt mail-type=END --slurm-opt gres=gpu:8)")
    p.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="a shell line the sbatch script runs before srun, repeatable (e.g. 'module load cuda')")
    p.add_argument("--array", default=None, metavar="CONFIGS_OR_SEEDS",
                   help="a job array: seeds (0-3 or 0,1,5; sets train.seed) or config files (a.yaml,b.yaml); "
                        "one run dir each under --run-dir")
    p.add_argument("--max-requeues", type=int, default=3,
                   help="requeues on timeout or preemption before the job gives up (default 3)")
    p.add_argument("--run-dir", default=None, help="run directory (default: runs/<config name>); "
                   "a requeued or relaunched job resumes from its checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch script and submit nothing")
    p.add_argument("--wait", action="store_true",
                   help="wait for the jobs to finish and report their outcome (always so with --executor local)")


def run(args) -> int:
    from cluster.launch import Resources, make_plan, parse_nodes, parse_slurm_opts, sbatch_script, submit, submitit_command
    from hieratok.config.errors import ConfigError

    slurm_only = [flag for flag, given in (("--mem", args.mem), ("--constraint", args.constraint),
                                           ("--exclusive", args.exclusive), ("--slurm-opt", args.slurm_opt),
                                           ("--setup", args.setup)) if given]
    if args.executor == "local" and slurm_only:
        raise ConfigError(f"{', '.join(slurm_only)} apply to --executor slurm only")
    nodes, max_nodes = parse_nodes(args.nodes)
    resources = Resources(nodes=nodes, max_nodes=max_nodes, gpus_per_node=args.gpus_per_node, tasks_per_node=args.tasks_per_node,
                          cpus_per_task=args.cpus_per_task, partition=args.partition, time_min=args.time,
                          account=args.account, qos=args.qos, max_requeues=args.max_requeues, mem=args.mem,
                          constraint=args.constraint, exclusive=args.exclusive,
                          slurm_opts=parse_slurm_opts(args.slurm_opt), setup=list(args.setup))
    plan = make_plan(args.config, args.overrides, resources, array=args.array, run_dir=args.run_dir)
    if args.dry_run:
        if args.executor == "slurm":
            print(sbatch_script(plan).rstrip("\n"), flush=True)
        else:
            print(f"# local executor: {resources.tasks_per_node} task(s) of\n{submitit_command(plan.folder)}", flush=True)
        for index, run in enumerate(plan.runs):  # after the script, so that stdout alone is the script
            print(f"# {run.name}{f' (array index {index})' if len(plan.runs) > 1 else ''}: run dir {run.run_dir}",
                  file=sys.stderr)
        return 0

    from cluster.requeue_count import RunDirSnapshot

    snapshots = [RunDirSnapshot.take(run.run_dir) for run in plan.runs]  # before the jobs can write there
    jobs = submit(args.executor, plan)
    where = "SLURM job" if args.executor == "slurm" else "local job"
    for job, run in zip(jobs, plan.runs):
        print(f"submitted {where} {job.job_id} ({resources.world_size} task(s) on {resources.node_count} node(s)): "
              f"run dir {run.run_dir}", flush=True)
        print(f"  log of task 0: {job.paths.stdout}".replace("%t", "0"), flush=True)
    if not (args.wait or args.executor == "local"):
        return 0
    return _wait_and_report(jobs, plan, args.executor, snapshots)


def _wait_and_report(jobs, plan, executor: str, snapshots) -> int:
    from cluster.requeue_count import RequeueCount, count_requeues
    from cluster.slurm_queue import wait_until_out_of_queue

    failed = 0
    for job, run, snapshot in zip(jobs, plan.runs, snapshots):
        if executor == "slurm":  # a start that failed with a node may be requeued: SLURM says when it is over
            wait_until_out_of_queue(str(job.job_id))
        try:
            outcomes = job.results()
        except Exception as e:  # noqa: BLE001 - submitit raises the job's own error types
            outcomes, error = None, e
        if executor == "slurm":
            # SLURM requeues jobs by itself too (scontrol requeue, preemption, node failure), which
            # the job's own count (requeues through submitit's checkpoint()) never sees: ask SLURM.
            requeues = count_requeues(str(job.job_id), plan.job_name, snapshot)
        else:  # the local executor requeues only through checkpoint(), so the job's count is exact
            requeues = RequeueCount(outcomes[0].requeues, "job") if outcomes else None
        if outcomes is None:
            failed += 1
            after = f" after {requeues.count} requeue(s)" if requeues else ""
            print(f"job {job.job_id} ({run.name}) failed{after}: {error}", file=sys.stderr)
        else:
            print(f"job {job.job_id} ({run.name}) finished at step {outcomes[0].step} after {requeues.count} "
                  f"requeue(s): {run.run_dir}", flush=True)
        if requeues and requeues.note:
            print(f"  requeue count of job {job.job_id}: {requeues.note}", flush=True)
    return 1 if failed else 0
