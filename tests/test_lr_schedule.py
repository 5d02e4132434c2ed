"""The learning-rate schedule: warm-up, then cosine from the end of warm-up (the default) or
warmup-stable-decay (`train.decay_ratio`, as torchtitan's), and bad values named."""
import math

import pytest

from hieratok.config.errors import ConfigError
from hieratok.config.loader import load_config
from hieratok.train.optim import lr_at, scaled_lr


def train_cfg(**train):
    overrides = [f"train.{k}={'null' if v is None else v}" for k, v in train.items()]
    return load_config("configs/tokenizer/tiny_single.yaml", overrides).train


def test_default_is_cosine_from_the_end_of_warm_up_to_the_floor():
    t = train_cfg(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    peak = scaled_lr(t)
    assert [lr_at(s, t) for s in (1, 5, 10)] == pytest.approx([peak * 0.1, peak * 0.5, peak])
    assert lr_at(55, t) == pytest.approx(peak * (0.1 + 0.9 * 0.5))  # halfway through the cosine
    assert lr_at(100, t) == pytest.approx(peak * 0.1)


@pytest.mark.parametrize("decay_type", ["linear", "cosine"])
def test_warmup_stable_decay_holds_the_peak_then_decays_over_the_last_fraction(decay_type):
    t = train_cfg(max_steps=100, warmup_steps=10, min_lr_ratio=0.0, decay_ratio=0.2, decay_type=decay_type)
    peak = scaled_lr(t)
    assert all(lr_at(s, t) == pytest.approx(peak) for s in range(10, 81))
    lrs = [lr_at(s, t) for s in range(80, 101)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # strictly down over the last 20 steps
    assert lr_at(90, t) == pytest.approx(peak * 0.5)  # both shapes pass half the peak at the midpoint
    assert lr_at(100, t) == pytest.approx(0.0, abs=1e-12)
    if decay_type == "cosine":
        assert lr_at(85, t) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi / 4)))


def test_a_decay_longer_than_the_run_after_warm_up_starts_at_the_end_of_warm_up():
    t = train_cfg(max_steps=100, warmup_steps=10, min_lr_ratio=0.0, decay_ratio=1.0, decay_type="linear")
    assert lr_at(10, t) == pytest.approx(scaled_lr(t))
    assert lr_at(55, t) == pytest.approx(scaled_lr(t) * 0.5)


@pytest.mark.parametrize("key,value,named", [("decay_ratio", 1.5, "train.decay_ratio"), ("decay_ratio", 0, "train.decay_ratio"),
                                             ("decay_type", "step", "train.decay_type")])
def test_bad_schedule_values_are_named(key, value, named):
    with pytest.raises(ConfigError, match=named):
        train_cfg(**{key: value})
