"""Export a run's latest checkpoint to `export/` in one process, whatever wrote it: DDP or FSDP2
(DCP, possibly sharded over many ranks) or DeepSpeed ZeRO-1/2/3."""
from __future__ import annotations

from pathlib import Path

import torch

from hieratok.nn.model_card import write_model_card
from hieratok.train.checkpoint import DCP_DIR, DS_DIR, DS_EXTRA, DS_TAG, CheckpointDirs, read_trainer_state


def export_from_checkpoint(run_dir: str | Path, weights: str = "ema", out: str | Path | None = None) -> Path:
    from hieratok.config.loader import load_config
    from hieratok.train.task_registry import build_task

    run_dir = Path(run_dir)
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    checkpoint = CheckpointDirs(run_dir, 1).latest()
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir}/checkpoints holds no complete checkpoint to export")
    cfg = load_config(run_dir / "config.yaml")
    saved = read_trainer_state(checkpoint)
    task = build_task(cfg)
    model = task.build_model()
    use_ema = weights == "ema" and cfg.train.ema_decay > 0
    if saved["backend"] == "deepspeed":
        state = _deepspeed_state(checkpoint, model, use_ema)
    else:
        state = _dcp_state(checkpoint, model, use_ema)
    target = Path(out) if out is not None else run_dir / "export"
    task.export(state, target, {"weights": "ema" if use_ema else "raw", "step": saved["step"]})
    task.after_export(target)
    write_model_card(target, run_dir)
    return target


def _dcp_state(checkpoint: Path, model: torch.nn.Module, use_ema: bool) -> dict[str, torch.Tensor]:
    import torch.distributed.checkpoint as dcp

    from hieratok.train.backends.torch_dcp import single_process_is_intended

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    target: dict = {"model": state}
    if use_ema:
        target["ema"] = {n: p.detach().clone().float() for n, p in model.named_parameters() if p.requires_grad}
    with single_process_is_intended():
        dcp.load({"train": target}, checkpoint_id=str(checkpoint / DCP_DIR))  # reshards from any world size
    if use_ema:
        state.update({k: v.to(state[k].dtype) for k, v in target["ema"].items()})
    return state


def _deepspeed_state(checkpoint: Path, model: torch.nn.Module, use_ema: bool) -> dict[str, torch.Tensor]:
    extra = torch.load(checkpoint / DS_EXTRA, map_location="cpu", weights_only=False)
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint / DS_DIR), tag=DS_TAG)
    state = {k: v.to(model.state_dict()[k].dtype) for k, v in state.items()}
    if use_ema and extra.get("ema"):
        state.update(extra["ema"])
    return state
