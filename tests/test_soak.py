"""bench/soak.py, short: 3 cycles of a 2-process FSDP2 training stopped by SIGTERM or SIGKILL at random
(seeded) moments and resumed at world size 1 or 2. Every cycle survives, no sample is lost or seen
twice, and the final weights equal an uninterrupted run's."""
import sys

import pytest

from train_runs import REPO

sys.path.insert(0, str(REPO / "bench"))
from soak import run_soak  # noqa: E402


@pytest.mark.slow
def test_a_short_soak_survives_every_cycle_and_loses_no_sample(tmp_path, embedded_mds):
    result = run_soak(embedded_mds, tmp_path, cycles=3, seed=1)
    # seed 1: SIGTERM at world size 1, then SIGKILL at 2, then SIGKILL at 1
    assert result["sigterm"] and result["sigkill"] and result["resumes_at_another_world_size"] == 3, result
    assert result["cycles_survived"] == 3, result["history"]
    assert result["keys_lost"] == 0 and result["keys_duplicated"] == 0, result
    assert result["weights_equal"], result
