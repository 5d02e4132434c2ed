"""One pass of the Inception over an image set: float64 statistics, plus raw features when asked.

FID needs only the statistics; KID (pool features of both sets) and ISC (logits of one set) need
the features themselves, so callers list what to keep.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from hieratok.eval.feature_stats import FeatureStats
from hieratok.eval.inception import FID_FEATURE, inception_features
from hieratok.progress import bar


@dataclass
class Extracted:
    stats: FeatureStats  # of the pool features (FID_FEATURE)
    features: dict[str, torch.Tensor] = field(default_factory=dict)  # the kept ones, float32 [N, d]

    def merge(self, other: "Extracted") -> "Extracted":
        """Append `other`, which must come after self in the image order."""
        self.stats.merge(other.stats)
        for k, v in other.features.items():
            self.features[k] = torch.cat([self.features[k], v]) if k in self.features else v
        return self


def extract(source, model, batch_size: int, *, keep: tuple[str, ...] = (), start_batch: int = 0,
            stop_batch: int | None = None, limit: int | None = None,
            on_batch: Callable[[int], None] | None = None) -> Extracted:
    """Statistics of `source`'s images (batches [start_batch, stop_batch), at most `limit` images)."""
    missing = [f for f in (FID_FEATURE, *keep) if f not in model.features_list]
    if missing:
        raise ValueError(f"the Inception extractor was built without features {missing}; it has {model.features_list}")
    stats = FeatureStats(2048, {"feature": FID_FEATURE})
    kept: dict[str, list[torch.Tensor]] = {k: [] for k in keep}
    seen = 0
    for i, images in enumerate(bar(source.iter_batches(batch_size, start_batch, stop_batch), desc="inception features")):
        if limit is not None:
            images = images[: limit - seen]
        if len(images) == 0:
            break
        feats = inception_features(model, images)
        stats.update(feats[FID_FEATURE])
        for k in keep:
            kept[k].append(feats[k])
        seen += len(images)
        if on_batch is not None:
            on_batch(i)
        if limit is not None and seen >= limit:
            break
    if seen == 0:
        raise ValueError(f"no images read from {source.describe()['path']}")
    return Extracted(stats, {k: torch.cat(v) for k, v in kept.items()})
