"""The generator's training task (a `hieratok.task.Task`): flow matching on normalised latents.

Latents come from the latent cache (`data.format: latent`; its stats and tokenizer are recorded in
it) or, without a cache (`data.format: mds | wds`), from encoding each image batch on the fly with
the frozen tokenizer `model.tokenizer`; the per-channel stats are then measured at start on the
first `model.stats_images` images (split over the ranks).

Flow time, flow noise and label dropout of every sample are keyed by (seed, step, sample key), as
the tokenizer's posterior noise is, so the loss does not depend on which rank a sample lands on.
"""
from __future__ import annotations

import logging

import torch
import torch.nn as nn

from hieratok.config.errors import ConfigError
from hieratok.distributed.randomness import keyed_rand, keyed_randn
from hieratok.generator.flow import drop_labels, flow_matching_loss, logit_normal
from hieratok.generator.model import Generator, as_generator_config, export_config, latent_shape
from hieratok.generator.normalization import LatentStats
from hieratok.generator.tokenizer_ref import TokenizerRef, load_frozen_tokenizer, resolve_tokenizer
from hieratok.task import Task

log = logging.getLogger(__name__)


class GeneratorTask(Task):
    previews = "samples"
    PREVIEW_IMAGES, PREVIEW_STEPS = 8, 16

    def __init__(self, cfg):
        self.cfg = cfg
        self.model_cfg = as_generator_config(cfg.model)
        self.loss_cfg = cfg.loss
        self.seed = cfg.train.seed
        self.latent_shape = latent_shape(self.model_cfg)
        self.from_cache = cfg.data.format == "latent"
        self.device = torch.device("cpu")
        self.tokenizer = None  # loaded only to encode on the fly
        self._stats_on_device: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.from_cache:
            self.stats, self.tokenizer_ref = self._from_cache()
        else:
            if self.model_cfg.tokenizer is None:
                raise ConfigError(f"data.format={cfg.data.format} reads images, so set model.tokenizer to the "
                                  f"tokenizer run or export that encodes them (or encode a latent cache with "
                                  f"`hieratok encode` and train on it with data.format=latent)")
            self.stats: LatentStats | None = None  # measured in `to()`, once the tokenizer is on its device
            self.tokenizer_ref = resolve_tokenizer(self.model_cfg.tokenizer, None, "model.tokenizer")

    def _from_cache(self) -> tuple[LatentStats, TokenizerRef]:
        from hieratok.generator.latent_cache import cache_path, read_cache

        cache = read_cache(cache_path(self.cfg.data))
        if cache.latent_shape != self.latent_shape:
            raise ConfigError(
                f"the latent cache {cache.path} holds latents of shape {list(cache.latent_shape)} but the model "
                f"expects {list(self.latent_shape)} (model.latent_grid^2, or the tokens of model.latent_scales, x model.latent_channels)")
        ref = resolve_tokenizer(self.model_cfg.tokenizer, cache.tokenizer, f"the latent cache {cache.path}",
                                require_files=self.model_cfg.tokenizer is not None)
        return cache.stats, ref

    # --- building ------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        model = Generator(self.model_cfg)
        model.set_grad_checkpointing(self.cfg.train.activation_checkpointing or self.model_cfg.grad_checkpointing)
        return model

    def block_modules(self, model: nn.Module) -> list[nn.Module]:
        return list(model.blocks)

    def to(self, device: torch.device, rank: int = 0, world_size: int = 1) -> "GeneratorTask":
        self.device = torch.device(device)
        if not self.from_cache and self.tokenizer is None:
            self.tokenizer = load_frozen_tokenizer(self.tokenizer_ref, self.device)
            if tuple(self.tokenizer.latent_shape) != self.latent_shape:
                raise ConfigError(f"model.tokenizer {self.tokenizer_ref.path} makes latents of shape "
                                  f"{list(self.tokenizer.latent_shape)}; the model expects {list(self.latent_shape)}")
        if self.stats is None:
            self.stats = self._measure_stats(rank, world_size)
        self._stats_on_device = None
        return self

    def _measure_stats(self, rank: int, world_size: int) -> LatentStats:
        """Per-channel stats of the first `model.stats_images` images (centre crop), summed over ranks."""
        from hieratok.tokenizer.latent_stats import measure_channel_stats

        if self.tokenizer is None:
            self.tokenizer = load_frozen_tokenizer(self.tokenizer_ref, self.device)
        acc = measure_channel_stats(self._encode, self.cfg.data, channels=self.latent_shape[1],
                                    num_images=self.model_cfg.stats_images, batch_size=self.cfg.train.micro_batch_size,
                                    seed=self.seed, rank=rank, world_size=world_size, device=self.device)
        return LatentStats.from_moments(acc.n, torch.from_numpy(acc.sum), torch.from_numpy(acc.sum_sq))

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        """Posterior means, as the latent cache stores them (bf16 autocast on CUDA when training in bf16)."""
        bf16 = images.device.type == "cuda" and self.cfg.dist.mixed_precision == "bf16"
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
            return self.tokenizer.encode(images).float()

    # --- the loss -------------------------------------------------------------------------------
    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        if self._stats_on_device is None or self._stats_on_device[0].device != z.device:
            self._stats_on_device = (torch.tensor(self.stats.mean, device=z.device),
                                     torch.tensor(self.stats.std, device=z.device))
        mean, std = self._stats_on_device
        return (z.float() - mean) / std

    def prepare_batch(self, batch: dict, device: torch.device) -> dict:
        labels = batch["label"]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.model_cfg.num_classes):
            raise ValueError(f"a batch holds class label {int(labels.max())} (or {int(labels.min())}): outside "
                             f"[0, model.num_classes={self.model_cfg.num_classes}); keys {list(batch['key'])[:4]}...")
        if "latent" in batch:
            z = batch["latent"].to(device, non_blocking=True)
        else:
            if self.tokenizer is None or self.stats is None:
                self.to(device)
            from data_pipeline.loading.augment import images_on

            with torch.no_grad():
                z = self._encode(images_on(device, batch["image"]))
        return {"latent": self.normalize(z), "label": labels.to(device, non_blocking=True).long(),
                "key": list(batch["key"])}

    def compute_loss(self, model: nn.Module, batch: dict, step: int):
        x0, keys, lc = batch["latent"], batch["key"], self.loss_cfg
        device = x0.device
        t = logit_normal(keyed_randn(self.seed, step, keys, (), "flow_time", device), lc.time_mean, lc.time_std)
        noise = keyed_randn(self.seed, step, keys, self.latent_shape, "flow_noise", device)
        dropout = keyed_rand(self.seed, step, keys, "label_dropout", device)
        labels = drop_labels(batch["label"], lc.label_dropout, self.model_cfg.num_classes, uniform=dropout)
        loss, terms = flow_matching_loss(model, x0, labels, t, noise)
        terms["loss"] = loss.detach()
        return loss, terms

    # --- previews -----------------------------------------------------------------------------
    @torch.no_grad()
    def preview(self, model: nn.Module, held_out_images) -> torch.Tensor | None:
        """Samples of 8 classes spread over the label range, from the same noise every time (Heun, 16
        steps, no guidance), decoded by the tokenizer: successive grids show the model learning."""
        from hieratok.generator.images import network_precision
        from hieratok.generator.sampler import Guidance, guided_velocity, per_sample_noise, sample

        if self.tokenizer is None:  # training from a cache: the decoder is needed only here
            try:
                self.tokenizer = load_frozen_tokenizer(self.tokenizer_ref, self.device)
            except FileNotFoundError as e:  # a cache whose tokenizer stayed on another machine: no grids
                log.warning("no sample grids: the tokenizer that decodes them is not here (%s)", e)
                self.previews = None
                return None
        n, classes = self.PREVIEW_IMAGES, self.model_cfg.num_classes
        labels = torch.arange(n, device=self.device) * classes // n
        noise = per_sample_noise(self.seed, range(n), self.latent_shape, self.device)
        was_training = model.training
        model.eval()
        guided = guided_velocity(model, classes, Guidance())
        with network_precision(self.device):
            x = sample(lambda z, t, y: guided(z, t, y).float(), noise, labels, self.PREVIEW_STEPS, "heun")
            images = self.tokenizer.decode(self.stats.denormalize(x)).float().clamp(-1, 1)
        model.train(was_training)
        return images.permute(1, 2, 0, 3).reshape(3, images.shape[-2], -1)  # one row, an image a column

    # --- export -------------------------------------------------------------------------------
    def export(self, state_dict: dict[str, torch.Tensor], directory, extra: dict | None = None) -> None:
        """model.safetensors + config.json: the model config, the tokenizer (`tokenizer_ref`: path, weights
        hash) and the latent stats that `hieratok sample` needs to turn generated latents into images."""
        from hieratok.nn.pretrained import save_state_dict

        if self.stats is None:
            self.to(self.device)
        record = {"tokenizer_ref": self.tokenizer_ref.to_dict(), "latent_stats": self.stats.to_dict(),
                  "flow": {"convention": "x_t = (1 - t) x0 + t noise; v = noise - x0; t = 1 is noise"}}
        save_state_dict(state_dict, export_config(self.model_cfg, {**record, **(extra or {})}), directory)
