"""WDS loader: webdataset stages (`ResampledShards` or a seeded shard list split by rank and worker,
`tarfile_to_samples`, `shuffle`) in a DataLoader, made deterministic so that it can resume.

Shards (from the split's manifest entry, which also gives their sample counts) are split over ranks
(by the given rank, not a global), then over DataLoader workers. Training:
  * resampled=False: each epoch shuffles the shard list with (seed, epoch); rank r reads every
    world_size-th shard, worker w every num_workers-th of those, once; samples go through a shuffle
    buffer seeded by (seed, epoch, rank, worker). Every rank yields the same number of full batches
    (the smallest rank's), so DDP never waits on a short rank: each sample is read at most once
    an epoch, and a few (the partial batches, and what the longer ranks hold beyond the shortest)
    are left out of that epoch.
  * resampled=True: each worker draws shards with replacement (`ResampledShards`, seeded by
    seed, epoch, rank, worker); an epoch is `wds_epoch_samples` (default: the split's sample
    count) // (world_size x B) batches per rank.
  Evaluation (train=False): one pass, no shuffle, the last batch of a worker may be short.

What a WDS resume guarantees, next to MDS:
  * Same world_size, num_workers, batch size and seed: EXACT. The pipeline is a pure function of
    (seed, epoch, rank, worker), so on resume each worker replays its stream and drops the samples
    of the batches already consumed before decoding them (their tar bytes are read again, which
    costs I/O proportional to the position in the epoch), and the DataLoader starts at the worker
    the uninterrupted one would have asked next.
  * Another world_size, num_workers or batch size: NOT exact. The resume continues the same epoch
    after the same global number of samples, but shards sit on other ranks, so within that epoch
    some samples are seen twice and others not at all. With resampled=True the stream is sampling
    with replacement anyway, so the continuation is statistically equivalent to an uninterrupted
    run (webdataset's own recommendation); with resampled=False it is approximate.
  MDS (mds_loader.py) is exact in both cases.
"""
from __future__ import annotations

import itertools
import random
import warnings

import numpy as np
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from data_pipeline.errors import DataError
from data_pipeline.loading.augment import collate, crop_flip_uint8, to_unit_range
from hieratok.distributed.randomness import keyed_seed

IMAGE_SUFFIXES = ("jpg", "png", "jpeg", "webp")


def resume_point(consumed: int, batches_per_worker: list[int]) -> tuple[list[int], int]:
    """Where a DataLoader over these workers stands after yielding `consumed` batches: the batches
    each worker had produced, and the worker whose batch comes next (0 when none is left). It takes
    batches round-robin in worker order, skipping exhausted workers."""
    W = len(batches_per_worker)
    done, nxt, left = [0] * W, 0, consumed
    while left > 0:
        active = [w for w in range(W) if done[w] < batches_per_worker[w]]
        if not active:
            break
        if nxt == 0:  # whole rounds at once
            rounds = min(left // len(active), min(batches_per_worker[w] - done[w] for w in active))
            if rounds:
                for w in active:
                    done[w] += rounds
                left -= rounds * len(active)
                continue
        w = next(w for w in itertools.chain(range(nxt, W), range(nxt)) if done[w] < batches_per_worker[w])
        done[w] += 1
        left -= 1
        nxt = (w + 1) % W
    nxt = next((w for w in itertools.chain(range(nxt, W), range(nxt)) if done[w] < batches_per_worker[w]), 0)
    return done, nxt


class _WdsEpoch(IterableDataset):
    """One epoch of one rank; each DataLoader worker reads its share (see module docstring)."""

    def __init__(self, loader: "WdsLoader", epoch: int, skip: list[int], budget: list[int] | None, rotate: int):
        self.cfg, self.epoch, self.skip, self.budget, self.rotate = loader, epoch, skip, budget, rotate

    def _shard_urls(self, w: int):
        c = self.cfg
        for i in c.shard_order(self.epoch)[c.rank::c.world_size][w::c.workers]:
            yield {"url": c.urls[i]}

    def __iter__(self):
        c = self.cfg
        info = get_worker_info()
        # a resumed epoch starts at the worker the uninterrupted DataLoader would have asked next:
        # DataLoader worker 0 plays that (logical) worker, and the rest follow in the same cycle
        w = ((info.id if info else 0) + self.rotate) % c.workers
        if c.resampled and c.train:
            shards = iter(wds.ResampledShards(c.urls, seed=c.seed, deterministic=True,
                                              worker_seed=lambda: keyed_seed(c.seed, self.epoch, c.rank, w)))
        else:
            shards = self._shard_urls(w)
        samples = wds.tarfile_to_samples(handler=_name_the_shard)(shards)
        if c.train and c.shuffle:
            samples = wds.shuffle(c.shuffle_buffer, initial=c.shuffle_buffer,
                                  rng=random.Random(keyed_seed(c.seed, self.epoch, c.rank, w)))(samples)
        samples = itertools.islice(samples, self.skip[w] * c.batch_size, None)
        batches = self._batches(map(self._decode, samples))
        if self.budget is not None:
            batches = itertools.islice(batches, self.budget[w] - self.skip[w])
        yield from batches

    def _decode(self, sample: dict) -> dict:
        c = self.cfg
        suffix = next((s for s in IMAGE_SUFFIXES if s in sample), None)
        if suffix is None or "cls" not in sample:
            raise DataError(f"WDS sample {sample.get('__key__')} in {sample.get('__url__')} has no image or no .cls")
        key = sample["__key__"]
        return {"image": crop_flip_uint8(sample[suffix], c.resolution, train=c.train, flip=c.flip, seed=c.seed,
                                         epoch=self.epoch, key=key),
                "label": int(sample["cls"]), "key": key}

    def _batches(self, samples):
        B = self.cfg.batch_size
        while True:
            chunk = list(itertools.islice(samples, B))
            if len(chunk) == B or (chunk and not self.cfg.train):
                yield collate(chunk)
            if len(chunk) < B:
                return


def _name_the_shard(exn: Exception) -> bool:
    url = next((a for a in reversed(exn.args) if isinstance(a, str) and a.endswith(".tar")), "?")
    raise DataError(f"cannot read WDS shard {url}: {exn}") from exn


class WdsLoader:
    def __init__(self, shards: list[dict], *, batch_size: int, rank: int, world_size: int, num_workers: int,
                 prefetch_factor: int, train: bool, shuffle: bool, resampled: bool, shuffle_buffer: int,
                 epoch_samples: int, resolution: int, flip: bool, seed: int, where: str = "WDS split",
                 uint8_images: bool = False):
        self.where = where  # what errors name (the data path and split)
        self._finish = (lambda batch: batch) if uint8_images else to_unit_range
        self.urls = [s["url"] for s in shards]
        self.shard_samples = [s["samples"] for s in shards]
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.num_workers, self.prefetch_factor = num_workers, prefetch_factor
        self.train, self.shuffle, self.resampled = train, shuffle, resampled
        self.shuffle_buffer, self.resolution, self.flip, self.seed = shuffle_buffer, resolution, flip, seed
        self.workers = max(1, num_workers)
        self.epoch_samples = epoch_samples
        self.batches_per_rank = epoch_samples // (world_size * batch_size)
        self._check_shards()
        if train and resampled and self.batches_per_rank == 0:
            raise DataError(f"{where}: a WDS epoch of {epoch_samples} samples is shorter than one batch on every "
                            f"rank ({world_size} ranks x {batch_size})")
        self._epoch, self._consumed, self._open = 0, 0, False

    def _check_shards(self) -> None:
        if not self.urls:
            raise DataError(f"{self.where}: the WDS split has no shards")
        if self.train and not self.resampled and sum(self._batches_per_worker(0)) == 0:
            raise DataError(
                f"{self.where}: WDS split of {sum(self.shard_samples)} samples in {len(self.urls)} shards gives some "
                f"rank no full batch of {self.batch_size} ({self.world_size} ranks x {self.workers} workers); "
                f"re-prepare with a smaller --samples-per-shard, use fewer workers or a smaller batch, or set "
                f"wds_resampled")

    @property
    def samples_per_epoch(self) -> int:
        return self.epoch_samples if self.train and self.resampled else sum(self.shard_samples)

    def shard_order(self, epoch: int) -> list[int]:
        if self.train and self.shuffle:
            return [int(i) for i in np.random.default_rng(keyed_seed(self.seed, epoch)).permutation(len(self.urls))]
        return list(range(len(self.urls)))

    def _worker_samples(self, epoch: int, rank: int) -> list[int]:
        mine = self.shard_order(epoch)[rank::self.world_size]
        return [sum(self.shard_samples[i] for i in mine[w::self.workers]) for w in range(self.workers)]

    def _batches_per_worker(self, epoch: int) -> list[int]:
        """Batches each worker of this rank yields this epoch (the DataLoader's round-robin needs it)."""
        W, B = self.workers, self.batch_size
        if self.train and self.resampled:
            n = self.batches_per_rank
            return [n // W + (w < n % W) for w in range(W)]
        if not self.train:
            return [-(-n // B) for n in self._worker_samples(epoch, self.rank)]
        caps = [n // B for n in self._worker_samples(epoch, self.rank)]
        shortest = min(sum(n // B for n in self._worker_samples(epoch, r)) for r in range(self.world_size))
        while sum(caps) > shortest:  # trim the fullest workers until this rank matches the shortest
            w = max(range(W), key=lambda i: (caps[i], i))
            caps[w] -= 1
        return caps

    def __len__(self) -> int:
        return sum(self._batches_per_worker(self._epoch))

    def __iter__(self):
        if self._open:
            self._epoch, self._consumed = self._epoch + 1, 0
        self._open = True
        counts = self._batches_per_worker(self._epoch)
        skip, rotate = resume_point(self._consumed, counts)
        dataset = _WdsEpoch(self, self._epoch, skip, counts if self.train else None, rotate)
        loader = DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None)
        return self._count(loader, self._epoch)

    def _count(self, loader, epoch: int):
        for batch in loader:
            self._consumed += 1
            yield self._finish(batch)
        if self._open and self._epoch == epoch:
            self._epoch, self._consumed, self._open = epoch + 1, 0, False

    def close(self) -> None:
        """Nothing to free: the WDS loader holds no shared memory between epochs (MdsLoader's does)."""

    def state_dict(self) -> dict:
        return {"format": "wds", "epoch": self._epoch,
                "sample_in_epoch": self._consumed * self.batch_size * self.world_size,
                "world_size": self.world_size, "num_workers": self.num_workers, "batch_size": self.batch_size,
                "seed": self.seed, "resampled": self.resampled}

    def load_state_dict(self, state: dict) -> None:
        same = all(state.get(k) == getattr(self, k) for k in ("world_size", "num_workers", "batch_size", "seed"))
        if not same:
            warnings.warn("WDS resume at another world size, worker count, batch size or seed continues after the "
                          "same global sample count but is not exact (see data_pipeline/loading/wds_loader.py)",
                          stacklevel=2)
        self._epoch = int(state["epoch"])
        self._consumed = int(state["sample_in_epoch"]) // (self.batch_size * self.world_size)
        self._open = False
