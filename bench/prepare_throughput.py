"""`prepare` throughput per worker and peak memory, on full-size JPEGs in ImageNet's layout
(embedded photos at a 500 px long side, as most ImageNet photos are), at 256 px, center-crop.

Each run is a fresh process (imports excluded from the timing) whose whole process tree is sampled
for memory: the sum of RSS over the tree (counts pages shared by the forked workers once per
process, so it overstates), the sum of PSS (each shared page split between the processes that map
it, which includes other programs mapping the same libraries, so it moves with what else runs) and
the sum of USS (pages only this job holds: what ending it would free). cpu_ms_per_image is the CPU time of the job (main process
and workers) per image: on a machine shared with other work, images/s per worker can fall as
workers are added while CPU per image holds, which shows the job was starved, not serialized.

    python bench/prepare_throughput.py [--quick] [--images 20000] [--workers 1,2] [--format mds]
--quick: 200 images, 2 workers, WDS (an MDS run spends most of a minute importing streaming).
Prints its figures last, as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RUN = """
import json, resource, sys, time
from data_pipeline.prepare.pipeline import run_prepare, warm_up
from data_pipeline.prepare.options import PrepareOptions

def cpu():  # this process and its joined pool workers
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

opts = PrepareOptions(src=sys.argv[1], out=sys.argv[2], format=sys.argv[3], workers=int(sys.argv[4]),
                      resolution=256, progress=False)
warm_up(opts)
start, cpu0 = time.perf_counter(), cpu()
manifest = run_prepare(opts)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": cpu() - cpu0,
                  "written": manifest["counts"]["written"]}))
"""


def _tree_memory(proc: psutil.Process) -> tuple[int, int, int]:
    rss = pss = uss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
            rss, pss, uss = rss + info.rss, pss + info.pss, uss + info.uss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return rss, pss, uss


def _run(src: Path, out: Path, fmt: str, workers: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-c", RUN, str(src), str(out), fmt, str(workers)],
                             stdout=subprocess.PIPE, text=True, env=env)
    proc, peak_rss, peak_pss, peak_uss = psutil.Process(child.pid), 0, 0, 0
    while child.poll() is None:
        try:
            rss, pss, uss = _tree_memory(proc)
            peak_rss, peak_pss, peak_uss = max(peak_rss, rss), max(peak_pss, pss), max(peak_uss, uss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.25)
    result = json.loads(child.stdout.read().strip().splitlines()[-1])
    rate = result["written"] / result["seconds"]
    return {"workers": workers, "images": result["written"], "seconds": round(result["seconds"], 1),
            "images_per_s": round(rate, 1), "images_per_s_per_worker": round(rate / workers, 1),
            "cpu_ms_per_image": round(1000 * result["cpu_seconds"] / result["written"], 2),
            "peak_rss_tree_mb": round(peak_rss / 2**20), "peak_pss_tree_mb": round(peak_pss / 2**20),
            "peak_uss_tree_mb": round(peak_uss / 2**20)}


def _burn(n: int) -> int:
    return sum(i * i for i in range(n))


def cpu_parallelism(workers: int, n: int = 6_000_000) -> float:
    """Control: speed-up of `workers` processes over one on pure CPU work of the same total size.
    Near `workers` on a free machine; near 1 when other work leaves this job about one core."""
    import multiprocessing as mp

    def timed(k):
        start = time.perf_counter()
        with mp.get_context("fork").Pool(k) as pool:
            pool.map(_burn, [n // k] * k)
        return time.perf_counter() - start

    return round(timed(1) / timed(workers), 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a run of under a minute")
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--workers", default=None, help="comma-separated worker counts to run (default 1,2)")
    p.add_argument("--format", choices=["mds", "wds"], default=None, help="default mds (--quick: wds)")
    p.add_argument("--dir", default=None, help="work folder (default: a temp dir)")
    args = p.parse_args()
    n_images = args.images or (200 if args.quick else 20000)
    workers = args.workers or ("2" if args.quick else "1,2")
    fmt = args.format or ("wds" if args.quick else "mds")
    work = Path(args.dir or tempfile.mkdtemp(prefix="hieratok-bench-prepare-"))

    from data_pipeline.prepare.embedded import export_embedded_folder

    originals = work / f"originals_{n_images}"
    if not originals.exists():
        export_embedded_folder(originals, n_images, workers=os.cpu_count() or 1)
    runs = []
    for w in (int(x) for x in workers.split(",")):
        out = work / f"{fmt}_w{w}"
        if out.exists():
            shutil.rmtree(out)
        runs.append(_run(originals, out, fmt, w))
        print(json.dumps(runs[-1]), flush=True)
    most = max(r["workers"] for r in runs)
    print(json.dumps({"images": n_images, "format": fmt, "resolution": 256, "runs": runs,
                      f"control_cpu_speedup_{most}_procs": cpu_parallelism(most)}))


if __name__ == "__main__":
    main()
