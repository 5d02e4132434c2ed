"""MDS loader: streaming's `StreamingDataset` + `StreamingDataLoader`, with a global resume state.

Guarantees (mosaicml-streaming's elastic determinism):
  * For a given seed, num_canonical_nodes and per-rank batch size B, the global sample order is
    fixed; global step i (world_size ranks x accumulation micro-steps of B) holds the same set of
    samples at any world size, as long as num_canonical_nodes and the global batch stay fixed
    (and the number of DataLoader workers per rank; it is part of streaming's partition).
  * `state_dict()` at any batch boundary is global: {epoch, sample_in_epoch, num_canonical_nodes,
    shuffle_seed, initial_physical_nodes}, where sample_in_epoch counts the samples of all ranks.
    `load_state_dict()` then `iter()` continues with exactly the next unseen batch, at the same or
    another world size (the global batch must be divisible by the new world size). A state taken
    after the last batch of an epoch points at the start of the next epoch.
  * Each `iter()` runs one epoch; a new `iter()` before the last one finished starts the next epoch.
  * Per-sample crop/flip depend on (seed, epoch, key) only (augment.py).
  * Training drops the last partial batch of each rank; streaming pads every rank to the same
    number of samples by repeating a few samples when the dataset does not divide evenly.
"""
from __future__ import annotations

import numpy as np
import torch
from streaming import StreamingDataLoader, StreamingDataset
from streaming.base.dataset import _ShardState
from torch.utils.data import default_collate

from data_pipeline.errors import DataError
from data_pipeline.loading.augment import crop_flip_uint8

# what streaming (0.13) raises in the iterating thread when its shard download/read thread failed
STREAMING_THREAD_FAILED = "Background thread failed"


class _LocalShardsFastPath(StreamingDataset):
    """Skips streaming's per-epoch download and ready threads when there is nothing to download.

    Each worker runs both threads over every sample of its epoch (a file lock per sample, and
    sleep-polling loops that hold the GIL against the decoding thread). When every shard is already
    local and none can be evicted (no remote, no cache_limit) they cannot change anything, so each
    marks the whole epoch done at once, as streaming's own loops would after walking it."""

    def _nothing_to_download(self) -> bool:
        return (self.cache_limit is None and all(s.remote is None for s in self.streams)
                and bool((self._shard_states.numpy() == _ShardState.LOCAL).all()))

    def _prepare_thread(self, it) -> None:
        if not self._nothing_to_download():
            return super()._prepare_thread(it)
        it.prepare_index = it.total
        it.on_exit()

    def _ready_thread(self, it) -> None:
        if not self._nothing_to_download():
            return super()._ready_thread(it)
        it.ready_index = it.total
        it.on_exit()


class ImageStreamingDataset(_LocalShardsFastPath):
    """Decodes `image` (the stock `jpeg`/`png` column) into a cropped uint8 tensor."""

    def __init__(self, *, resolution: int, train: bool, flip: bool, aug_seed: int, **kwargs):
        super().__init__(**kwargs)
        for shard in self.shards:  # hand the column's bytes to decode.py: PIL's header parse is skipped
            names, encodings = getattr(shard, "column_names", []), getattr(shard, "column_encodings", [])
            if "image" in names and encodings[names.index("image")] in ("jpeg", "png"):
                encodings[names.index("image")] = "bytes"
        self.resolution, self.train, self.flip, self.aug_seed = resolution, train, flip, aug_seed
        self.current_epoch = 0

    def _resume_incr_epoch(self):
        # the one place streaming tells a worker which epoch it is reading (augmentation needs it)
        epoch, sample_in_epoch = super()._resume_incr_epoch()
        self.current_epoch = epoch
        return epoch, sample_in_epoch

    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        image = crop_flip_uint8(sample["image"], self.resolution, train=self.train, flip=self.flip,
                                seed=self.aug_seed, epoch=self.current_epoch, key=sample["key"])
        return {"image": image, "label": int(sample["label"]), "key": sample["key"]}


class LatentStreamingDataset(_LocalShardsFastPath):
    """Rows of the generator's latent cache: latent float32 [T, C], label, key."""

    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        return {"latent": torch.from_numpy(np.array(sample["latent"], dtype=np.float32)),  # a writable copy
                "label": int(sample["label"]), "key": sample["key"]}


class MdsLoader:
    """`iter()` = one epoch of batches; `state_dict()` / `load_state_dict()` as documented above."""

    def __init__(self, dataset: StreamingDataset, *, batch_size: int, world_size: int, num_workers: int,
                 prefetch_factor: int, drop_last: bool, collate_fn=default_collate, finish_batch=None,
                 where: str = "MDS dataset"):
        self.dataset, self.where = dataset, where  # where: what errors name (the folder or URL read)
        self.batch_size, self.world_size = batch_size, world_size
        self._finish = finish_batch or (lambda batch: batch)  # in this process, after the worker's collate
        self._loader = StreamingDataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers, drop_last=drop_last, collate_fn=collate_fn,
            prefetch_factor=prefetch_factor if num_workers > 0 else None, persistent_workers=False,
        )
        self._epoch = 0  # the epoch being read, or the next one to read
        self._start = 0  # global sample_in_epoch where this epoch's iteration started
        self._seen = 0  # samples this rank yielded since then
        self._open = False  # an iteration is under way (not finished, no state loaded since)

    def __len__(self) -> int:
        return len(self._loader)

    @property
    def samples_per_epoch(self) -> int:
        """Samples an epoch over all ranks (before streaming pads ranks to equal shares)."""
        return int(self.dataset.epoch_size)

    def __iter__(self):
        if self._open:  # the previous epoch was left unfinished: this is the next epoch
            self._epoch, self._start = self._epoch + 1, 0
        self._seen, self._open = 0, True
        # streaming resumes from its RESUME state when that is not older than this epoch
        self.dataset.next_epoch = self._epoch
        return self._batches(self._epoch)

    def _batches(self, epoch: int):
        batches = iter(self._loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except RuntimeError as e:
                raise self._as_data_error(e) from e
            self._seen += len(batch["key"])
            yield self._finish(batch)
        if self._open and self._epoch == epoch:
            self._epoch, self._start, self._seen, self._open = epoch + 1, 0, 0, False

    def _as_data_error(self, error: RuntimeError) -> Exception:
        """streaming's download / read thread failing (a remote that went away, a shard gone) reaches the
        iterator as a bare RuntimeError, in this process or through a DataLoader worker: name the data."""
        if STREAMING_THREAD_FAILED not in str(error):
            return error
        return DataError(f"reading {self.where} failed: streaming's shard download/read thread stopped (its traceback "
                         f"is above: unreachable storage, a shard gone?); rerun once the data is reachable to resume")

    def close(self) -> None:
        """Free the dataset's shared memory (the run is done with it) instead of at the process's exit."""
        from data_pipeline.loading.shm_cleanup import release_dataset_shm

        release_dataset_shm(self.dataset)

    def state_dict(self) -> dict:
        return {
            "epoch": self._epoch,
            "sample_in_epoch": self._start + self._seen * self.world_size,
            "num_canonical_nodes": self.dataset.num_canonical_nodes,
            "shuffle_seed": self.dataset.shuffle_seed,
            "initial_physical_nodes": self.dataset.initial_physical_nodes or self._physical_nodes(),
        }

    def _physical_nodes(self) -> int:
        return self.dataset._unique_rank_world.num_nodes  # noqa: SLF001 - streaming keeps it there

    def load_state_dict(self, state: dict) -> None:
        state = {k: state[k] for k in ("epoch", "sample_in_epoch", "num_canonical_nodes", "shuffle_seed",
                                        "initial_physical_nodes") if k in state}
        self.dataset.load_state_dict(state)
        self._epoch, self._start, self._seen, self._open = int(state["epoch"]), int(state["sample_in_epoch"]), 0, False
