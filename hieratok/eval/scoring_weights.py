"""Which Inception / VGG / LPIPS weights the demo and the ablations score with: the real files when
present, else weights made here for the purpose, and then every number they produce says so."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
VGG_FILE = "vgg16-397923af.pth"
# the test-made Inception's BatchNorm statistics need only a few images; calibrating on all 400 of an
# ablation's held-out images cost 35 s of its start-up on 2 cores
CALIBRATION_IMAGES = 128


@dataclass
class ScoringWeights:
    inception: Path
    vgg: Path
    lpips_heads: Path
    inception_real: bool
    vgg_real: bool

    @property
    def note(self) -> str:
        fake = [n for n, real in (("Inception (rFID)", self.inception_real), ("VGG16 (LPIPS)", self.vgg_real))
                if not real]
        if not fake:
            return "real Inception and VGG16 weights"
        return (f"TEST-MADE weights for {' and '.join(fake)}: random networks (Inception BatchNorm calibrated on "
                f"these images). These numbers rank the tokenizers against each other only; they are not "
                f"comparable with published rFID / LPIPS. Put {INCEPTION_FILE} and {VGG_FILE} in "
                f"{torch.hub.get_dir()}/checkpoints to score with the real networks.")


def scoring_weights(out_dir: Path, calibration_images: torch.Tensor, inception: str | None = None,
                    vgg: str | None = None) -> ScoringWeights:
    from hieratok.eval.inception import to_uint8
    from hieratok.eval.weights_for_tests import (
        make_test_inception_weights,
        make_test_lpips_heads,
        make_test_vgg16_weights,
    )
    from hieratok.tokenizer.lpips import resolve_lin_weights

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    out_dir.mkdir(parents=True, exist_ok=True)
    inc = Path(inception) if inception else hub / INCEPTION_FILE
    inc_real = inc.exists()
    if not inc_real:
        inc = make_test_inception_weights(to_uint8(calibration_images[:CALIBRATION_IMAGES]),
                                          out_dir / "inception-TEST-MADE.pth")
    v = Path(vgg) if vgg else hub / VGG_FILE
    v_real = v.exists()
    if not v_real:
        v = make_test_vgg16_weights(out_dir / "vgg16-TEST-MADE.pth")
    try:
        heads = resolve_lin_weights(None)  # the lpips package ships the real v0.1 heads
    except FileNotFoundError:
        heads = make_test_lpips_heads(out_dir / "lpips-heads-TEST-MADE.pth")
    return ScoringWeights(Path(inc), Path(v), Path(heads), inc_real, v_real)
