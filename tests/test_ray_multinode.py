"""A 2-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head and a worker node, each its
own raylet, on loopback). Ray FID's actors spread one a node and give the single-process value to
1e-6; a node removed while its actor holds a part is survived: the part is re-run on the node left.
"""
import numpy as np
import pytest
import torch

import ray
from ray.cluster_utils import Cluster

from hieratok.eval.extract import extract
from hieratok.eval.fid import fid_of
from hieratok.eval.image_sources import open_image_source
from hieratok.eval.inception import load_inception
from hieratok.eval.ray_fid import RayInceptionPool
from slurm_cluster import wait_until

BATCH, N = 1, 4  # 4 images -> 4 parts over the actors


@pytest.fixture(scope="module")
def two_node_ray():
    """Head with 2 CPUs, worker node with 1: the second actor can only go to the worker node, and the
    head has room for the replacement of an actor whose node is lost."""
    if ray.is_initialized():  # a one-node Ray another test module left: this module needs its own cluster
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def single_process(fid_image_sets, test_inception_weights):
    """(reference, generated) statistics from one plain process at 1 torch thread, the actors' count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_inception(test_inception_weights)
        return tuple(extract(open_image_source(fid_image_sets[kind][0]), model, BATCH, limit=N).stats
                     for kind in ("smooth", "noise"))
    finally:
        torch.set_num_threads(threads)


def test_two_workers_on_two_nodes_equal_one_process(two_node_ray, fid_image_sets, test_inception_weights,
                                                      single_process):
    ref, gen = single_process
    with RayInceptionPool(test_inception_weights, 2, threads_per_worker=1) as pool:
        out, info = pool.extract(open_image_source(fid_image_sets["noise"][0]), BATCH, limit=N)
    assert (info.workers, info.nodes, info.retries) == (2, 2, 0)
    np.testing.assert_allclose(out.stats.outer_sum, gen.outer_sum, rtol=1e-12)
    expected = fid_of(ref, gen)
    assert expected > 1.0 and fid_of(ref, out.stats) == pytest.approx(expected, rel=1e-6)


def test_a_node_lost_mid_fid_is_survived(two_node_ray, fid_image_sets, test_inception_weights, single_process,
                                         tmp_path):
    import threading

    cluster, worker = two_node_ray
    marker = tmp_path / "held"  # the worker node's actor writes it after its first batch, then waits there
    result = {}

    def run():
        with RayInceptionPool(test_inception_weights, 2, threads_per_worker=1) as pool:
            result["out"] = pool.extract(open_image_source(fid_image_sets["noise"][0]), BATCH, limit=N,
                                         hold_on_node=(worker.node_id, str(marker)))

    driver = threading.Thread(target=run, daemon=True)
    driver.start()
    wait_until(marker.exists, 300, "the worker node's actor to hold its part")
    cluster.remove_node(worker)  # the node goes, its raylet and actor with it
    driver.join(timeout=300)
    assert not driver.is_alive(), "the extraction did not finish after the node was lost"
    out, info = result["out"]
    ref, gen = single_process
    assert info.retries == 1 and info.nodes == 1  # every part, the lost one's included, came from the head
    np.testing.assert_allclose(out.stats.outer_sum, gen.outer_sum, rtol=1e-12)
    assert fid_of(ref, out.stats) == pytest.approx(fid_of(ref, gen), rel=1e-6)
