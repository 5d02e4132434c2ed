"""Too little data is an error before training, never a hang.

A training loader whose epoch holds fewer samples than one global batch, or gives a rank fewer full
micro-batches than one optimizer step consumes (zero included), would make a step wrap around the
epoch again and again, or spin for ever on empty epochs. These checks run on the built loaders,
before the first step, and name the data and the counts. Loaders provide `where` (what they read),
`samples_per_epoch` (all ranks) and `len()` (this rank's batches an epoch).
"""
from __future__ import annotations

from data_pipeline.errors import DataError


def require_full_steps(loader, *, global_batch: int, micro_batch: int, world_size: int, rank: int = 0) -> None:
    samples, batches = loader.samples_per_epoch, len(loader)
    accum = max(1, global_batch // (micro_batch * world_size))
    if samples < global_batch:
        raise DataError(
            f"{loader.where} holds {samples} training samples, fewer than one global batch of {global_batch} "
            f"(train.global_batch_size): add data or lower train.global_batch_size and train.micro_batch_size")
    if batches < accum:
        raise DataError(
            f"{loader.where}: rank {rank} of {world_size} gets {batches} full micro-batches of {micro_batch} "
            f"an epoch from {samples} samples, and one step takes {accum} (train.global_batch_size="
            f"{global_batch}); use a smaller train.micro_batch_size, fewer ranks or (WDS) fewer data.num_workers, "
            f"or more data")


def require_some_batches(loader, *, what: str) -> None:
    if len(loader) < 1:
        raise DataError(f"{loader.where} gives {what} no batch ({loader.samples_per_epoch} samples)")
