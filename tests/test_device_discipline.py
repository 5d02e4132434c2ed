"""Device discipline, checked on a CPU: every tensor a hot path makes is made on the model's device.

`strict_devices()` sends device-less factory calls from project code to `meta`, so a CPU tensor
that would meet CUDA tensors on a GPU meets CPU tensors here and fails the same way. The CLI runs
below cover both tasks, every backend, the GAN's auxiliary step, encode, sample and eval.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from device_discipline import strict_devices
from train_runs import REPO, env, tiny_overrides

TESTS = Path(__file__).resolve().parent


def test_a_device_less_tensor_beside_model_tensors_fails_as_on_cuda():
    """The loop's old flag packing: model-device sums stacked with a bare `torch.tensor(flag)`."""
    sums = [torch.ones((), device="cpu"), torch.zeros((), device="cpu")]
    with strict_devices(project_dirs=(TESTS,)) as mode:
        with pytest.raises(RuntimeError, match="device"):
            torch.stack(sums + [torch.tensor(0.0)])
        fixed = torch.stack(sums + [torch.full((), 0.0, device=sums[0].device)])
    assert fixed.device.type == "cpu"
    assert len(mode.moved) == 1 and "test_device_discipline.py" in mode.moved[0]


def test_mixed_dtypes_outside_autocast_fail_as_on_cuda():
    conv = torch.nn.Conv2d(3, 4, 2).to(torch.bfloat16)
    x = torch.rand(1, 3, 4, 4)
    with strict_devices(project_dirs=(TESTS,)):
        with pytest.raises(RuntimeError, match="CUDA refuses"):
            conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert conv(x).dtype == torch.bfloat16  # autocast casts the operands: allowed
        assert conv(x.bfloat16()).dtype == torch.bfloat16


def test_keyed_host_noise_copied_to_the_device_is_caught():
    """Noise drawn with a CPU generator and no device, as the keyed noise once was."""
    with strict_devices(project_dirs=(TESTS,)):
        noise = torch.randn(4, generator=torch.Generator())
        with pytest.raises(NotImplementedError, match="meta"):
            noise.to("cpu")


def _strict(args: list[str], nproc: int = 1) -> list[str]:
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                    f"--nproc_per_node={nproc}"]
    proc = subprocess.run([*launcher, str(TESTS / "strict_cli.py"), *args], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args[0]} failed under strict devices:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    line = next(x for x in proc.stdout.splitlines()[::-1] if x.startswith("strict_devices: "))
    return json.loads(line.removeprefix("strict_devices: "))


@pytest.mark.parametrize("backend,extra", [
    ("ddp", {"loss.gan.weight": 0.1, "loss.gan.start_step": 0, "loss.gan.ramp_steps": 1}),
    ("fsdp", {}),
    ("deepspeed", {}),
    # bf16 as on a GPU: every backend's matmuls and convs must see one dtype or run under autocast
    ("ddp", {"dist.mixed_precision": "bf16", "data.unit_range_on": "device"}),  # a GPU's defaults
    ("fsdp", {"dist.mixed_precision": "bf16"}),
    ("deepspeed", {"dist.mixed_precision": "bf16"}),
])
def test_tokenizer_training_steps_make_every_tensor_on_the_device(tmp_path, embedded_mds, backend, extra):
    overrides = tiny_overrides(embedded_mds, **{"train.max_steps": 2, "dist.backend": backend, **extra})
    config = str(REPO / "configs" / "tokenizer" / "tiny_hieratok.yaml")
    assert _strict(["train", "--config", config, "--run-dir", str(tmp_path / "run"), *overrides]) == []


def test_generator_training_sampling_and_encoding_make_every_tensor_on_the_device(
        tmp_path, embedded_mds, tiny_tokenizer_export, tiny_latent_cache):
    run = tmp_path / "gen"
    overrides = [f"data.path={tiny_latent_cache}", "train.max_steps=2", "train.global_batch_size=8",
                 "train.micro_batch_size=4", "logging.progress=false", "checkpoint.every_steps=0"]
    assert _strict(["train", "--config", str(REPO / "configs/generator/tiny.yaml"), "--run-dir", str(run),
                    *overrides]) == []
    assert _strict(["sample", "--run-dir", str(run), "--num", "4", "--cfg-scale", "2", "--steps", "2",
                    "--out", str(tmp_path / "s.npz")]) == []
    assert _strict(["encode", "--tokenizer", str(tiny_tokenizer_export), "--data", str(embedded_mds),
                    "--split", "val", "--out", str(tmp_path / "cache"), "--workers", "0"]) == []
    assert _strict(["eval", "--run-dir", str(tiny_tokenizer_export), "--data", str(embedded_mds),
                    "--metrics", "psnr,ssim", "--num", "8", "--out", str(tmp_path / "e.json")]) == []


def test_from_pretrained_puts_the_whole_model_on_map_location(tiny_tokenizer_export):
    """Loading copies the file's tensors into the parameters where they are; the model itself must move.
    (Seen on an H200: the frozen tokenizer stayed on the CPU, and the latent cache's encode failed at the first
    conv, its CUDA input under autocast beside CPU weights.) `meta` stands in for a GPU here."""
    from hieratok.tokenizer.model import Tokenizer

    model = Tokenizer.from_pretrained(tiny_tokenizer_export, map_location="meta")
    placed = {t.device.type for t in [*model.parameters(), *model.buffers()]}
    assert placed == {"meta"}
