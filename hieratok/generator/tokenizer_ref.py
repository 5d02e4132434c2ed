"""Which tokenizer a generator's latents belong to, and the check that refuses any other.

A latent cache and a generator export both record {"path", "weights_sha256"} of the tokenizer export
that made (or decodes) the latents. Latents of one tokenizer decoded by another are noise, so every
use re-hashes the weights and refuses a mismatch with an error naming both.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hieratok.config.errors import ConfigError
from hieratok.nn.pretrained import WEIGHTS_NAME

log = logging.getLogger(__name__)


class TokenizerMismatchError(ValueError):
    """The tokenizer given (or found) is not the one the latents were made with."""


@dataclass(frozen=True)
class TokenizerRef:
    path: str  # the tokenizer's export folder
    weights_sha256: str

    def to_dict(self) -> dict:
        return {"path": self.path, "weights_sha256": self.weights_sha256}

    @classmethod
    def from_dict(cls, d, where: str) -> "TokenizerRef":
        if not isinstance(d, dict) or not {"path", "weights_sha256"} <= set(d):
            raise ValueError(f"{where}: 'tokenizer' must be a mapping with 'path' and 'weights_sha256'; got {d!r}")
        return cls(str(d["path"]), str(d["weights_sha256"]))


def tokenizer_ref(path: str | Path) -> TokenizerRef:
    """Hash the weights of the tokenizer at a run dir or an export dir."""
    from data_pipeline.prepare.shard_writers import sha256_of
    from hieratok.nn.pretrained import resolve_export_dir

    export = resolve_export_dir(path).resolve()
    return TokenizerRef(str(export), sha256_of(export / WEIGHTS_NAME))


def resolve_tokenizer(override: str | None, recorded: TokenizerRef | None, where: str,
                      require_files: bool = True) -> TokenizerRef:
    """The tokenizer to use: `override` (model.tokenizer) if given, else the one `where` records.

    Refuses an override whose weights differ from the recorded ones. Without an override, the recorded
    tokenizer is re-hashed when its files are there; `require_files=False` (training from a cache, which
    never decodes) accepts a recorded tokenizer whose files are elsewhere, with a warning."""
    if override is None:
        if recorded is None:
            raise ConfigError(f"{where} records no tokenizer and model.tokenizer is not set: set model.tokenizer "
                              f"to the tokenizer run dir or export dir")
        if not require_files and not Path(recorded.path).exists():
            log.warning("the tokenizer recorded in %s (%s) is not on this machine; continuing with its recorded "
                        "hash %s", where, recorded.path, recorded.weights_sha256[:12])
            return recorded
        actual = tokenizer_ref(recorded.path)
        if actual.weights_sha256 != recorded.weights_sha256:
            raise TokenizerMismatchError(
                f"the tokenizer at {recorded.path} has changed since {where} was made: weights sha256 "
                f"{actual.weights_sha256[:12]}... but {where} records {recorded.weights_sha256[:12]}...; "
                f"its latents would not decode. Restore that tokenizer, or re-encode with the new one"
            )
        return actual
    actual = tokenizer_ref(override)
    if recorded is not None and actual.weights_sha256 != recorded.weights_sha256:
        raise TokenizerMismatchError(
            f"model.tokenizer={override} (weights sha256 {actual.weights_sha256[:12]}...) is not the tokenizer "
            f"{where} was made with ({recorded.path}, weights sha256 {recorded.weights_sha256[:12]}...); "
            f"latents of one tokenizer do not decode with another. Unset model.tokenizer to use the recorded one"
        )
    return actual


def load_frozen_tokenizer(ref: TokenizerRef, device="cpu"):
    """The tokenizer of `ref`, in eval mode with gradients off (it is never trained here)."""
    from hieratok.tokenizer.model import Tokenizer

    return Tokenizer.from_pretrained(ref.path, map_location=device).requires_grad_(False).eval()
