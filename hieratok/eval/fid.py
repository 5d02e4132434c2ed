"""FID (ours, robust, from float64 sums) plus ISC and KID (torch-fidelity's code) between two image sets.

A set is a folder of images, an ADM-layout `.npz` (arr_0 uint8 NHWC), prepared shards, or, for
the reference only, a statistics `.npz` (FID only). Features come from torch-fidelity's Inception,
in this process or on Ray actors. `compare_sets` returns the JSON that `hieratok fid` prints.
"""
from __future__ import annotations

from pathlib import Path

from hieratok.eval.extract import Extracted, extract
from hieratok.eval.feature_stats import as_gaussian, is_stats_file, load_stats
from hieratok.eval.frechet import frechet_distance
from hieratok.eval.image_sources import open_image_source
from hieratok.eval.inception import FID_FEATURE, ISC_FEATURE, load_inception, resolve_inception_weights
from hieratok.eval.provenance import weights_provenance

ALL_METRICS = ("fid", "isc", "kid")
ISC_SPLITS = 10  # torch-fidelity's defaults
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def fid_of(stats_a, stats_b) -> float:
    """FID between two FeatureStats / GaussianStats."""
    a, b = as_gaussian(stats_a), as_gaussian(stats_b)
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def isc_of(logits) -> dict:
    from torch_fidelity.metric_isc import isc_features_to_metric

    splits = max(1, min(ISC_SPLITS, len(logits) // 2))  # a one-image split always scores exactly 1
    out = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=2020)
    return {"isc_mean": out["inception_score_mean"], "isc_std": out["inception_score_std"], "isc_splits": splits}


def kid_of(gen_features, ref_features) -> dict:
    from torch_fidelity.metric_kid import kid_features_to_metric

    size = min(KID_SUBSET_SIZE, len(gen_features), len(ref_features))
    out = kid_features_to_metric(gen_features, ref_features, kid_subsets=KID_SUBSETS, kid_subset_size=size, verbose=False)
    return {"kid_mean": out["kernel_inception_distance_mean"], "kid_std": out["kernel_inception_distance_std"],
            "kid_subset_size": size}


def parse_metrics(text: str | None) -> tuple[tuple[str, ...], bool]:
    """(metrics, explicit) from a comma list such as 'fid,kid'; None means all, not explicitly asked."""
    if text is None:
        return ALL_METRICS, False
    metrics = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    bad = [m for m in metrics if m not in ALL_METRICS]
    if bad or not metrics:
        raise ValueError(f"unknown metric(s) {bad or text!r}; valid: {', '.join(ALL_METRICS)}")
    return metrics, True


class SetReader:
    """Reads image sets to features: in this process (one Inception, built on first use) or, with
    `ray_workers`, on a pool of Ray actors kept for every set it reads (Ray must be initialised).
    Shards are streamed in this process either way. Call `close()` when done."""

    def __init__(self, weights: str | Path | None, batch_size: int = 50, ray_workers: int = 0,
                 ray_gpus_per_worker: float = 0.0, device: str = "cpu"):
        self.weights = resolve_inception_weights(weights)
        self.batch_size, self.device = batch_size, device
        self._model = None
        self.pool = None
        if ray_workers:
            from hieratok.eval.ray_fid import RayInceptionPool

            self.pool = RayInceptionPool(self.weights, ray_workers, gpus_per_worker=ray_gpus_per_worker)
        self.ray_runs: list[dict] = []

    def model(self):
        if self._model is None:
            self._model = load_inception(self.weights, self.device, (FID_FEATURE, ISC_FEATURE))
        return self._model

    def read(self, source, keep: tuple[str, ...], limit: int | None) -> Extracted:
        if self.pool is not None and source.num_images is not None:
            out, info = self.pool.extract(source, self.batch_size, keep=keep, limit=limit)
            self.ray_runs.append({"set": source.describe()["path"], **vars(info)})
            return out
        return extract(source, self.model(), self.batch_size, keep=keep, limit=limit)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def compare_sets(ref: str | Path, gen: str | Path, reader: SetReader, *, metrics: str | None = None,
                 num: int | None = None, resolution: int = 256, save_stats: str | Path | None = None) -> dict:
    """FID (and ISC of `gen`, KID) between the reference and generated sets; the JSON-ready result."""
    wanted, explicit = parse_metrics(metrics)
    notes = []
    ref_is_stats = Path(ref).is_file() and Path(ref).suffix == ".npz" and is_stats_file(ref)
    if ref_is_stats and "kid" in wanted:
        if explicit:
            raise ValueError(f"KID needs the reference images, but --ref {ref} is a statistics file; drop kid from --metrics")
        wanted = tuple(m for m in wanted if m != "kid")
        notes.append("kid skipped: the reference is a statistics file")

    weights_info = weights_provenance(reader.weights)
    if ref_is_stats:
        ref_stats, ref_desc, ref_feats = load_stats(ref), {"kind": "stats", "path": str(Path(ref).resolve())}, None
        made_with = ref_stats.meta.get("inception_weights", {}).get("sha256")
        if made_with and made_with != weights_info["sha256"]:
            notes.append(f"the reference statistics were made with other Inception weights (sha256 {made_with}, "
                         f"now {weights_info['sha256']}): this FID mixes feature spaces")
    else:
        ref_source = open_image_source(ref, resolution)
        ref_x = reader.read(ref_source, (FID_FEATURE,) if "kid" in wanted else (), num)
        ref_stats, ref_desc, ref_feats = ref_x.stats, ref_source.describe(), ref_x.features
    gen_source = open_image_source(gen, resolution)
    if gen_source.num_images is None:
        raise ValueError(f"--gen {gen} looks like shards; generated sets are a folder of images or an ADM-layout .npz")
    keep = tuple(k for k, m in ((FID_FEATURE, "kid"), (ISC_FEATURE, "isc")) if m in wanted)
    gen_x = reader.read(gen_source, keep, num)

    result: dict = {}
    if "fid" in wanted:
        result["fid"] = fid_of(ref_stats, gen_x.stats)
    if "isc" in wanted:
        result.update(isc_of(gen_x.features[ISC_FEATURE]))
    if "kid" in wanted:
        result.update(kid_of(gen_x.features[FID_FEATURE], ref_feats[FID_FEATURE]))
    result["num_ref"] = ref_stats.n
    result["num_gen"] = gen_x.stats.n
    ref_desc["num_images"] = ref_stats.n
    result["protocol"] = {
        "tool": "hieratok fid (torch-fidelity InceptionV3 2048-d pool features; FID from float64 sums, "
                "tr sqrt via eigvalsh of S1^1/2 S2 S1^1/2; ISC/KID by torch-fidelity)",
        "reference": ref_desc,
        "generated": {**gen_source.describe(), "num_images": gen_x.stats.n},
        "inception_weights": weights_info,
        "image_preprocessing": "uint8 RGB as stored, resized to 299 by torch-fidelity's TF-compatible bilinear",
    }
    if ref_stats.meta.get("reference"):
        result["protocol"]["reference"]["made_from"] = ref_stats.meta["reference"]
    if reader.ray_runs:
        result["ray"] = reader.ray_runs
    if notes:
        result["notes"] = notes
    if save_stats is not None:
        if ref_is_stats and not hasattr(ref_stats, "save"):
            raise ValueError(f"--save-stats: the reference {ref} holds only mu/sigma, not sums; nothing to re-save")
        ref_stats.meta["reference"] = ref_desc
        ref_stats.meta["inception_weights"] = result["protocol"]["inception_weights"]
        result["saved_stats"] = str(ref_stats.save(save_stats).resolve())
    return result
