"""The tokenizer's training task: L1 + MSE + KL (+ LPIPS) (+ hinge GAN), stage 1 or stage 2.

Stage 2 (`train.stage: 2`) starts from `train.init_from`, freezes the encoder and fine-tunes the
decoder. The posterior noise of each sample is keyed by (seed, step, sample key), so the loss
does not depend on which rank a sample lands on.
"""
from __future__ import annotations


import torch
import torch.nn as nn
from torch.func import functional_call

from hieratok.distributed.randomness import keyed_randn
from hieratok.nn.pretrained import export_config, resolve_export_dir, save_state_dict
from hieratok.task import Task
from hieratok.tokenizer.discriminator import (
    PatchDiscriminator,
    gan_ramp,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from hieratok.tokenizer.model import EXPORT_FORMAT, Tokenizer, as_model_config


class TokenizerTask(Task):
    previews = "reconstructions"

    def __init__(self, cfg):
        self.cfg = cfg
        self.model_cfg = as_model_config(cfg.model)
        self.loss_cfg = cfg.loss
        self.seed = cfg.train.seed
        self.lpips = None
        self.discriminator: nn.Module | None = None  # DDP-wrapped by the engine for its own step
        self.discriminator_raw: nn.Module | None = None
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    # --- building ------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        model = Tokenizer(self.model_cfg)
        t = self.cfg.train
        if t.init_from:
            src = Tokenizer.from_pretrained(resolve_export_dir(t.init_from))
            model.load_state_dict(src.state_dict())
        if t.stage == 2:
            if not t.init_from:
                raise ValueError("train.stage=2 fine-tunes a trained tokenizer: set train.init_from to its run or export dir")
            model.encoder.requires_grad_(False)
        model.set_grad_checkpointing(t.activation_checkpointing or self.model_cfg.grad_checkpointing)
        self.latent_shape = model.latent_shape
        return model

    def block_modules(self, model: nn.Module) -> list[nn.Module]:
        return [*model.encoder.stack.blocks, *model.decoder.stack.blocks]

    def aux_modules(self) -> dict[str, tuple[nn.Module, float]]:
        """Models with their own optimizer: the discriminator, when the GAN term is on."""
        g = self.loss_cfg.gan
        if g.weight <= 0:
            return {}
        self.discriminator_raw = PatchDiscriminator(g.disc_channels, g.disc_layers)
        return {"discriminator": (self.discriminator_raw, g.lr)}

    def bind_aux(self, name: str, wrapped: nn.Module) -> None:
        if name == "discriminator":
            self.discriminator = wrapped

    def to(self, device: torch.device, rank: int = 0, world_size: int = 1) -> "TokenizerTask":
        if self.loss_cfg.lpips.weight > 0 and self.lpips is None:
            from hieratok.tokenizer.lpips import LPIPS

            self.lpips = LPIPS.from_config(self.loss_cfg.lpips).to(device)
        return self

    # --- held-out scoring and previews ---------------------------------------------------------
    def held_out_scorer(self, device: torch.device):
        if self.cfg.eval.every_steps <= 0:
            return None
        from hieratok.eval.reconstruction_scorer import ReconstructionScorer

        return ReconstructionScorer(self.cfg.eval, self.loss_cfg.lpips, device, lpips=self.lpips)

    @torch.no_grad()
    def preview(self, model: nn.Module, held_out_images) -> torch.Tensor:
        """Originals over their reconstructions (posterior mean), one column per image."""
        images = held_out_images()[:8]
        was_training = model.training
        model.eval()
        recon, _ = model(images, sample=False)
        model.train(was_training)
        rows = torch.cat([images, recon.float().clamp(-1, 1)], dim=0)
        n = images.shape[0]
        return rows.view(2, n, *rows.shape[1:]).permute(2, 0, 3, 1, 4).reshape(3, 2 * rows.shape[-2], -1)

    # --- the loss -------------------------------------------------------------------------------
    def prepare_batch(self, batch: dict, device: torch.device) -> dict:
        from data_pipeline.loading.augment import images_on

        return {"image": images_on(device, batch["image"]), "key": list(batch["key"])}

    def compute_loss(self, model: nn.Module, batch: dict, step: int):
        x = batch["image"]
        noise = keyed_randn(self.seed, step, batch["key"], self.latent_shape, "posterior", x.device)
        recon, post = model(x, noise=noise)
        recon = recon.float()
        lc = self.loss_cfg
        err = recon - x
        terms = {"l1": err.abs().mean(), "mse": err.square().mean()}
        loss = lc.l1 * terms["l1"] + lc.mse * terms["mse"]
        if self.cfg.train.stage == 1:
            terms["kl"] = post.kl()
            loss = loss + lc.kl * terms["kl"]
        if self.lpips is not None:
            terms["lpips"] = self.lpips(recon, x).mean()
            loss = loss + lc.lpips.weight * terms["lpips"]
        ramp = gan_ramp(step, lc.gan.start_step, lc.gan.ramp_steps) if self.discriminator_raw is not None else 0.0
        if ramp > 0:
            # the generator's adversarial term must not push gradients into the discriminator
            frozen = {n: p.detach() for n, p in self.discriminator_raw.named_parameters()}
            terms["gan_g"] = hinge_generator_loss(functional_call(self.discriminator_raw, frozen, (recon,)))
            loss = loss + lc.gan.weight * ramp * terms["gan_g"]
        self._last = (x, recon.detach()) if ramp > 0 else None
        terms["loss"] = loss
        return loss, {k: v.detach() for k, v in terms.items()}

    def aux_losses(self, step: int) -> dict[str, tuple[torch.Tensor, dict]]:
        """The discriminator's hinge loss on the last micro-batch (real vs detached reconstruction)."""
        if self._last is None or self.discriminator is None:
            return {}
        x, recon = self._last
        self._last = None
        logits = self.discriminator(torch.cat([x, recon]))
        real, fake = logits.chunk(2)
        d_loss = hinge_discriminator_loss(real, fake)
        return {"discriminator": (d_loss, {"disc_loss": d_loss.detach(), "logits_real": real.mean().detach(),
                                           "logits_fake": fake.mean().detach()})}

    # --- export -------------------------------------------------------------------------------
    def export(self, state_dict: dict[str, torch.Tensor], directory, extra: dict | None = None) -> None:
        save_state_dict(state_dict, export_config(EXPORT_FORMAT, self.model_cfg, extra), directory)

    def after_export(self, directory, rank: int = 0, world_size: int = 1, device="cpu") -> None:
        from hieratok.tokenizer.latent_stats import record_export_latent_stats

        record_export_latent_stats(directory, self.cfg, rank, world_size, device)
