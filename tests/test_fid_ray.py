"""Ray-parallel feature extraction on a one-node Ray: a killed actor is retried and the result is unchanged;
`hieratok fid --ray-workers`. (2 actors equal to one process: tests/test_ray_multinode.py, on 2 nodes.)"""
import json

import pytest
import torch

import ray  # a declared dependency: a broken install fails here, it does not skip

from hieratok.eval.extract import extract  # noqa: E402
from hieratok.eval.fid import fid_of  # noqa: E402
from hieratok.eval.image_sources import open_image_source  # noqa: E402
from hieratok.eval.inception import load_inception  # noqa: E402
from hieratok.eval.ray_fid import RayInceptionPool, split_batches  # noqa: E402

BATCH, N = 1, 4  # 4 images -> 4 batches -> 4 parts on 2 actors


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def pool(local_ray, test_inception_weights):
    """Two Inception actors, started once for the module (an actor start costs seconds on 2 cores), one
    torch thread each whatever the machine: the single-process reference below reads at 1 thread too."""
    with RayInceptionPool(test_inception_weights, 2, threads_per_worker=1) as p:
        yield p


@pytest.fixture(scope="module")
def single_process(pool, fid_image_sets, test_inception_weights):
    """(reference statistics, generated-set statistics from one plain process). The generated set is
    read at the actors' thread count (1, pinned): CPU convolutions round differently at another
    one, and the random test-made network amplifies that to ~1e-5, where real Inception weights stay
    near 1e-7. The reference only has to be fixed, so the actors read it."""
    ref, _ = pool.extract(open_image_source(fid_image_sets["smooth"][0]), BATCH, limit=N)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = extract(open_image_source(fid_image_sets["noise"][0]), load_inception(test_inception_weights), BATCH,
                      limit=N)
    finally:
        torch.set_num_threads(threads)
    return ref.stats, gen.stats


def test_split_batches_covers_every_batch_once():
    assert split_batches(8, 2, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert split_batches(9, 2, 2) == [(0, 2), (2, 5)]
    assert split_batches(3, 4, 8) == [(0, 1)]


def test_a_worker_killed_mid_run_is_retried_and_the_result_is_unchanged(
        pool, tmp_path, fid_image_sets, single_process):
    ref, gen = single_process
    marker = tmp_path / "crashed_once"  # the first actor to finish a batch writes it and exits hard
    out, info = pool.extract(open_image_source(fid_image_sets["noise"][0]), BATCH, limit=N,
                             crash_once_marker=str(marker))
    assert marker.exists() and info.retries == 1
    assert out.stats.n == N
    assert fid_of(ref, out.stats) == pytest.approx(fid_of(ref, gen), rel=1e-6)


def test_fid_command_on_ray(pool, capsys, tmp_path, fid_image_sets, test_inception_weights, single_process):
    from hieratok.cli import main

    pool.close()  # free the 2 CPUs of the test cluster for the command's own actors
    ref, gen = single_process
    stats = ref.save(tmp_path / "ref.npz")
    argv = ["fid", "--ref", str(stats), "--gen", str(fid_image_sets["noise"][0]), "--metrics", "fid",
            "--inception-weights", str(test_inception_weights), "--batch-size", str(BATCH), "--num", str(N), "--ray-workers", "2"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["fid"] == pytest.approx(fid_of(ref, gen), rel=1e-6)
    assert result["ray"][0]["workers"] == 2 and result["num_gen"] == N
    assert ray.is_initialized(), "a Ray the caller started is left running"
