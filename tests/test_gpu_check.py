"""bench/gpu_check.py --cpu: the GPU check's code paths at tiny sizes on the CPU, run as users run it, with
its one JSON line read back. The figures that need CUDA must come back null, and say why."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO / "bench" / "gpu_check.py")
sys.path.insert(0, str(REPO / "bench"))  # the check's helpers, for the tests of their CUDA branches
TOP_KEYS = {"device", "mode", "gpus_visible", "torch", "precision", "procs", "peak_tflops", "mfu_basis",
            "host_syncs_basis", "flops", "attention", "tokenizer", "generator", "sampling", "fid_features",
            "resume", "sections", "section_seconds", "wall_s", "failed"}
RUN_KEYS = {"images_per_s", "step_ms", "timed_steps", "global_batch", "precision", "data_wait_fraction",
            "peak_memory_bytes", "host_syncs_per_step", "host_syncs_by_step", "host_sync_sites", "mfu",
            "profile"}


def _env() -> dict:
    return {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _check_run(run: dict, where: str) -> None:
    assert set(run) == RUN_KEYS, where
    assert run["images_per_s"] > 0 and run["step_ms"] > 0 and run["timed_steps"] >= 1, where
    assert run["global_batch"] == 16 and 0 <= run["data_wait_fraction"] <= 1, where
    assert run["precision"] == "fp32", where  # as the run resolved it
    # CUDA-only figures: null on a CPU, never a made-up number
    assert run["peak_memory_bytes"] is None and run["host_syncs_per_step"] is None, where
    assert run["host_syncs_by_step"] is None and run["host_sync_sites"] is None and run["mfu"] is None, where
    prof = run["profile"]  # the profiled steps after the timed window: host operators only on a CPU
    assert prof["steps"] == 2 and prof["wall_ms_per_step"] > 0, where
    assert prof["device_busy_fraction"] is None and prof["top_kernels"] is None, where
    ops = prof["top_cpu_ops"]
    assert any(op["name"].startswith("aten::") for op in ops) and all(op["self_ms_per_step"] >= 0 for op in ops), where


@pytest.mark.timeout(900)
def test_gpu_check_cpu_runs_every_section_and_prints_one_json_line(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, "--cpu", "--work-dir", str(tmp_path / "work")], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=870)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout[-3000:]
    r = json.loads(lines[0])
    assert set(r) == TOP_KEYS
    assert r["failed"] == {}
    assert r["mode"] == "cpu" and r["device"] == "cpu" and r["precision"] == "fp32" and r["procs"] == [1]
    assert r["peak_tflops"] is None and "null" in r["mfu_basis"]
    assert "not measurable" in r["host_syncs_basis"]
    assert r["wall_s"] > 0 and all(s >= 0 for s in r["section_seconds"].values())

    flops = r["flops"]
    assert "FlopCounterMode" in flops["counted_with"]
    assert all(flops[f"{k}_per_image"] > 0 for k in ("hieratok", "vitok", "generator"))
    assert flops["hieratok_per_image"] > flops["vitok_per_image"]  # the pyramid's extra tokens cost FLOPs

    att = r["attention"]
    assert att["tokens_per_scale"] == [1, 4, 16, 64] and att["dtype"] == "float32"
    assert att["fwd_bwd_ms"]["flex"] is None and "CUDA" in att["unavailable"]["flex"]
    assert all(att["fwd_bwd_ms"][k] > 0 for k in ("sdpa", "split", "mask"))
    assert att["max_abs_diff_vs_mask"]["sdpa"] < 1e-4 and att["max_abs_diff_vs_mask"]["split"] < 1e-4
    assert att["max_abs_diff_vs_mask"]["mask"] == 0
    assert att["auto_picks"] == "mask" and att["fastest"] in ("sdpa", "split", "mask")  # 85 tokens: the dense mask
    assert att["auto_is_fastest"] == (att["fastest"] == "mask")

    tok = r["tokenizer"]
    assert tok["presets"] == {"hieratok": "tiny_hieratok", "vitok": "tiny_single"}
    assert set(tok["runs"]) == {"ddp", "deepspeed_zero2"}  # the check treats every backend alike: two cover it
    for backend, by_procs in tok["runs"].items():
        pair = by_procs["1proc"]
        _check_run(pair["hieratok"], f"{backend} hieratok")
        _check_run(pair["vitok"], f"{backend} vitok")
        assert pair["hieratok_over_vitok_step_time"] > 0
    compiled, checkpointed = tok["variants"]["compile"], tok["variants"]["activation_checkpointing"]
    assert compiled["backend"] == "aot_eager"  # inductor's gcc is left to CUDA runs (tests/test_compile.py)
    _check_run(compiled["hieratok"], "compiled hieratok")
    _check_run(compiled["vitok"], "compiled vitok")
    assert compiled["hieratok_over_vitok_step_time"] > 0
    assert set(checkpointed) == {"hieratok"}
    _check_run(checkpointed["hieratok"], "activation-checkpointed hieratok")
    _check_run(tok["variants"]["unit_range_on_loader"]["hieratok"], "hieratok with host-side float images")

    gen = r["generator"]
    assert gen["preset"] == "tiny" and gen["procs"] == 1
    _check_run({k: v for k, v in gen.items() if k not in ("preset", "backend", "procs")}, "generator")

    s = r["sampling"]
    assert s["sampler"] == "heun" and s["images_per_s"] > 0 and s["model_calls_per_batch"] == 2 * s["steps"]

    fid = r["fid_features"]
    assert fid["images_per_s"] > 0 and isinstance(fid["weights_test_made"], bool)
    assert ("test-made" in fid["weights"]) == fid["weights_test_made"]

    res = r["resume"]
    assert res["equal"] is True and res["max_abs_loss_diff"] == 0 and res["max_abs_weight_diff"] == 0
    assert res["resumed_at"] == 3 and res["steps"] == 6 and res["differs_before_resume"] is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_gpu_check_without_cuda_asks_for_cpu():
    proc = subprocess.run([sys.executable, SCRIPT], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--cpu" in proc.stderr


def test_profile_summary_of_cuda_kernels_counts_overlaps_once():
    """The CUDA branch of bench/gpu_check_profile.py, which a CPU run never reaches, on made-up events."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    from gpu_check_profile import summarize

    def event(name, start, end, device=DeviceType.CUDA):
        span = SimpleNamespace(start=start, end=end, elapsed_us=lambda: end - start)
        return SimpleNamespace(name=name, device_type=device, time_range=span)

    # two steps in 1000 us of wall time: gemm [0,300) and [500,700); an all-reduce [250,400) overlapping
    # the first gemm on another stream; a CPU event that is not a kernel
    events = [event("gemm", 0, 300), event("gemm", 500, 700), event("nccl_allreduce", 250, 400),
              event("aten::mm", 0, 900, DeviceType.CPU)]
    cpu_op = SimpleNamespace(key="aten::mm", device_type=DeviceType.CPU, self_cpu_time_total=900.0, count=4)
    prof = SimpleNamespace(events=lambda: events, key_averages=lambda: [cpu_op])
    out = summarize(prof, wall_s=1e-3, steps=2, cuda=True)
    assert out["device_busy_fraction"] == pytest.approx(0.6)  # the union [0,400) + [500,700), not 0.65
    assert out["device_busy_ms_per_step"] == pytest.approx(0.3) and out["kernel_launches_per_step"] == 1.5
    assert [k["name"] for k in out["top_kernels"]] == ["gemm", "nccl_allreduce"]
    assert out["top_kernels"][0] == {"name": "gemm", "ms_per_step": pytest.approx(0.25), "per_step": 1.0}
    assert out["top_cpu_ops"] == [{"name": "aten::mm", "self_ms_per_step": pytest.approx(0.45), "per_step": 2.0}]


def test_a_profiler_that_cannot_start_is_an_error_in_the_summary_not_a_failed_run(monkeypatch):
    import torch.profiler

    from gpu_check_profile import StepProfile

    def refuse(**_):
        raise RuntimeError("CUPTI_ERROR_INSUFFICIENT_PRIVILEGES")

    monkeypatch.setattr(torch.profiler, "profile", refuse)
    prof = StepProfile(torch.device("cpu"))
    prof.start()
    assert prof.stop(2) == {"error": "RuntimeError: CUPTI_ERROR_INSUFFICIENT_PRIVILEGES"}
