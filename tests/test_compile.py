"""`train.compile`: per-block torch.compile trains as the eager run does, under DDP and under DeepSpeed
ZeRO-3 (whose per-module gather hooks must stay out of the compiled blocks), and the command exits.

The kernel compiler (inductor) costs about 50 s of gcc per cold run on the 2-core CI machine, so these
runs compile with `aot_eager`: Dynamo's tracing, guards and AOTAutograd's joint graph, the parts that
break on hooks, graph breaks and recompiles, without the kernel generation (bench/gpu_check.py runs
inductor on CUDA)."""
import pytest

from test_train_equivalence import assert_same_training
from hieratok.metrics_file import read_records
from train_runs import run_train, tiny_overrides

# with an evaluation at steps 10 and 20: no-grad graphs beside the training ones (8 in all for the tiny
# HieraTok, Dynamo's default limit per code object)
COMPILE = {"train.compile": "true", "train.compile_backend": "aot_eager", "eval.every_steps": 10,
           "eval.num_images": 16}
# what Dynamo prints when it gives up on a function after recompiling it config.recompile_limit times
RECOMPILE_LIMIT = "recompile_limit"


@pytest.mark.parametrize("backend", [{"dist.backend": "ddp"}, {"dist.backend": "deepspeed", "dist.zero_stage": 3}],
                         ids=["ddp", "deepspeed_zero3"])
def test_compiled_blocks_train_as_eager(tmp_path, reference_run, embedded_mds, backend):
    run_dir = tmp_path / "run"
    proc = run_train(run_dir, tiny_overrides(embedded_mds, **COMPILE, **backend), timeout=300)
    assert RECOMPILE_LIMIT not in proc.stderr, proc.stderr[-3000:]
    assert_same_training(run_dir, reference_run)
    evaluated = [r for r in read_records(run_dir / "metrics.jsonl") if r.get("event") == "eval"]
    assert [r["step"] for r in evaluated] == [10, 20]
