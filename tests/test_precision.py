"""`dist.mixed_precision: auto` (the presets' default) fits the device; an explicit bf16 on a CPU runs
as asked with one line that names its measured cost."""
import torch

from hieratok.config.loader import load_config
from hieratok.train.precision import resolve_precision


def test_auto_is_bf16_on_cuda_and_fp32_on_a_cpu():
    assert resolve_precision("auto", torch.device("cuda", 0)) == ("bf16", None)
    assert resolve_precision("auto", torch.device("cpu")) == ("fp32", None)
    assert resolve_precision("bf16", torch.device("cuda", 0)) == ("bf16", None)
    assert resolve_precision("fp32", torch.device("cpu")) == ("fp32", None)


def test_explicit_bf16_on_a_cpu_is_kept_and_names_its_cost():
    precision, warning = resolve_precision("bf16", torch.device("cpu"))
    assert precision == "bf16"
    assert "\n" not in warning and "bench/precision_cpu.py" in warning and "x fewer images/s" in warning


def test_the_real_presets_default_to_auto():
    for preset in ("tokenizer/hieratok_s_b16", "tokenizer/vitok_s_b16", "generator/lightningdit_b"):
        assert load_config(f"configs/{preset}.yaml").dist.mixed_precision == "auto"
