"""TensorBoard and W&B see a run as metrics.jsonl does (issue 16.5): every step's scalars once, across
a resume, the task's image grid (a tokenizer's reconstructions, a generator's samples), and the
export as a W&B model artifact."""
import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from train_runs import REPO, run_train, tiny_overrides
from hieratok.train.checkpoint import STATE_FILE

GENERATOR = str(REPO / "configs" / "generator" / "tiny.yaml")
MONITORED = {"logging.tensorboard": "true", "logging.wandb.mode": "offline", "logging.wandb.image_every_steps": 2,
             "train.max_steps": 4, "eval.every_steps": 0}


def _tensorboard(run_dir) -> EventAccumulator:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def _wandb_record_logs(run_dir) -> list[bytes]:
    return [p.read_bytes() for p in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))]


def test_a_resumed_tokenizer_run_logs_each_step_once_with_grids_and_its_export(tmp_path, embedded_mds, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(embedded_mds, **MONITORED)
    run_train(run_dir, [*overrides, "train.stop_at_step=3"])
    run_train(run_dir, overrides)  # resumes from step 3: TensorBoard's steps after it are purged
    events = _tensorboard(run_dir)
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in logged if "loss" in r}
    assert [(e.step, round(e.value, 5)) for e in events.Scalars("loss")] == [(s, round(v, 5)) for s, v in losses.items()]
    assert [e.step for e in events.Images("reconstructions")] == [2, 4]
    assert {"lr", "grad_norm", "images_per_s"} <= set(events.Tags()["scalars"])
    media = sorted(p.name.split("_")[1] for p in (run_dir / "wandb").glob("offline-run-*/files/media/images/*.png"))
    assert media == ["2", "4"]
    # the export, as an artifact of the W&B run that finished training (W&B's offline record log)
    first, second = _wandb_record_logs(run_dir)
    run_id = json.loads((run_dir / "checkpoints" / "step_00000004" / STATE_FILE).read_text())["wandb_run_id"]
    assert f"tokenizer-{run_id}".encode() in second and b"step-4" in second and b"model.safetensors" in second
    assert f"tokenizer-{run_id}".encode() not in first  # the interrupted part exported nothing


def test_a_generator_run_logs_sample_grids(tmp_path, tiny_latent_cache):
    run_dir = tmp_path / "run"
    overrides = [f"data.path={tiny_latent_cache}", "data.format=latent", "data.num_workers=0",
                 "train.global_batch_size=8", "train.micro_batch_size=8", "logging.progress=false",
                 *[f"{k}={v}" for k, v in {**MONITORED, "logging.wandb.mode": "disabled"}.items()]]
    run_train(run_dir, overrides, config=GENERATOR)
    images = _tensorboard(run_dir).Images("samples")
    assert [e.step for e in images] == [2, 4]
    assert images[0].width == 8 * images[0].height  # one row of 8 samples
    assert images[0].encoded_image_string != images[1].encoded_image_string  # the same noise, a model that moved
