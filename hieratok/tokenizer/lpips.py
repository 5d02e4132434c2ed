"""LPIPS-VGG (v0.1), the perceptual distance of Zhang et al. 2018, for the training loss and for eval.

Same computation as the `lpips` package (`lpips.LPIPS(net="vgg", version="0.1")`): inputs in
[-1, 1] are shifted/scaled, run through torchvision's VGG16 `features`, the five relu*_* maps are
unit-normalised over channels, squared differences weighted by the 1x1 linear heads, averaged over
space and summed over layers. Weights come only from local files:

- VGG16: torchvision's ImageNet state dict `vgg16-397923af.pth` (only `features.*` is used);
- heads: the `lpips` package's `weights/v0.1/vgg.pth` (keys `lin{0..4}.model.1.weight`).

`null` paths mean the torch hub cache ($TORCH_HOME/hub/checkpoints). The module is frozen and in
eval mode; gradients flow to the inputs. Under autocast the convolutions run in bf16/fp16 and the
normalisation and distances run in float32.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from hieratok.nn.weights_files import WeightsError, WeightsFile, resolve_weights

VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"
LIN_FILE = "lpips_v0.1_vgg.pth"  # the lpips package's weights/v0.1/vgg.pth, under a name that says what it is
# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: the end index of each slice of vgg16.features
VGG_SLICE_ENDS = (4, 9, 16, 23, 30)
VGG_CHANNELS = (64, 128, 256, 512, 512)


def _lpips_package_heads() -> Path | None:
    try:
        import lpips  # the reference package ships its v0.1 heads (a dev dependency here)
    except ImportError:
        return None
    p = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    return p if p.is_file() else None


VGG16_WEIGHTS = WeightsFile("VGG16 weights for LPIPS", VGG16_FILE, f"torchvision's, from {VGG16_URL}",
                            "loss.lpips.vgg_weights=PATH")
LPIPS_HEADS = WeightsFile("LPIPS v0.1 VGG linear-head weights", LIN_FILE,
                          "the `lpips` pip package's lpips/weights/v0.1/vgg.pth: `pip download lpips`, it is inside the wheel",
                          "loss.lpips.lin_weights=PATH", bundled=lambda: _lpips_package_heads())


def resolve_vgg_weights(path: str | Path | None) -> Path:
    return resolve_weights(VGG16_WEIGHTS, path)


def resolve_lin_weights(path: str | Path | None) -> Path:
    return resolve_weights(LPIPS_HEADS, path)


def vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 `features` (same indices as its state dict), without building the 120M-parameter
    classifier; convolutions initialised as torchvision does."""
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["D"], batch_norm=False)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return features


def _normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """d(x, y) per image, [B]; x and y float NCHW in [-1, 1]. Build it with `from_files` / `from_config`."""

    def __init__(self):
        super().__init__()
        features = vgg16_features()
        starts = (0, *VGG_SLICE_ENDS[:-1])
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in zip(starts, VGG_SLICE_ENDS))
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in VGG_CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.weight_files: dict[str, str] = {}

    # --- loading ------------------------------------------------------------------------------------
    @classmethod
    def from_files(cls, vgg_weights: str | Path | None = None, lin_weights: str | Path | None = None) -> "LPIPS":
        vgg_path, lin_path = resolve_vgg_weights(vgg_weights), resolve_lin_weights(lin_weights)
        model = cls()
        model._load_vgg(vgg_path)
        model._load_lins(lin_path)
        model.weight_files = {"vgg": str(vgg_path), "lin": str(lin_path)}
        # channels_last weights make the convolutions run in that layout, oneDNN's and cuDNN's faster one
        # (bench/scoring_speed.py)
        return model.to(memory_format=torch.channels_last).eval().requires_grad_(False)

    @classmethod
    def from_config(cls, lpips_cfg) -> "LPIPS":
        """From the `loss.lpips` config section (vgg_weights, lin_weights)."""
        return cls.from_files(lpips_cfg.vgg_weights, lpips_cfg.lin_weights)

    def _load_vgg(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        starts = (0, *VGG_SLICE_ENDS[:-1])
        mapped = {}
        for k, (a, b) in enumerate(zip(starts, VGG_SLICE_ENDS)):
            for i in range(a, b):
                for p in ("weight", "bias"):
                    if f"features.{i}.{p}" in state:
                        mapped[f"slices.{k}.{i - a}.{p}"] = state[f"features.{i}.{p}"]
        expected = {k for k in self.state_dict() if k.startswith("slices.")}
        missing = sorted(expected - set(mapped))
        if missing:
            raise WeightsError(f"{path} is not a torchvision VGG16 state dict ({VGG16_FILE}): "
                             f"{len(missing)} features.* tensors missing, e.g. {missing[0]}")
        self.load_state_dict(mapped, strict=False)

    def _load_lins(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            heads = {f"lins.{k}.weight": state[f"lin{k}.model.1.weight"] for k in range(len(VGG_CHANNELS))}
        except KeyError as e:
            raise WeightsError(f"{path} is not an LPIPS v0.1 VGG head file (lpips/weights/v0.1/vgg.pth): "
                             f"missing {e.args[0]}; found keys {sorted(state)[:6]}") from None
        self.load_state_dict(heads, strict=False)

    def train(self, mode: bool = True) -> "LPIPS":
        return super().train(False)  # frozen: always eval mode (no dropout), whatever the parent does

    # --- the distance ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two [B, 3, H, W] images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        b = x.shape[0]
        h = (torch.cat([x, y]) - self.shift) / self.scale  # one pass for both: same kernels, same batch
        total = torch.zeros(b, device=x.device, dtype=torch.float32)
        for vgg_slice, lin in zip(self.slices, self.lins):
            h = vgg_slice(h)
            f = _normalize(h.float())
            diff = (f[:b] - f[b:]).pow(2)
            total = total + (diff * lin.weight.float().view(1, -1, 1, 1)).sum(dim=1).mean(dim=(1, 2))
        return total
