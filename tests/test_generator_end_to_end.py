"""End to end on CPU, through the CLI: tiny tokenizer -> `hieratok encode` (2 ranks) -> 200 generator
steps of `hieratok train` on the latent cache -> `hieratok sample` (1 rank, then 2 ranks: the same bytes)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from hieratok.generator.latent_cache import read_cache
from hieratok.generator.tokenizer_ref import tokenizer_ref


def _hieratok(*args: str, ranks: int = 1) -> str:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
                 "-m", "hieratok", "--"] if ranks > 1 else [sys.executable, "-m", "hieratok"])
    out = subprocess.run([*launcher, *map(str, args)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"hieratok {args[0]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_encode_train_sample(tmp_path, embedded_mds, tiny_tokenizer_export, tiny_latent_cache):
    cache, run = tmp_path / "latents", tmp_path / "run"
    _hieratok("encode", "--tokenizer", tiny_tokenizer_export, "--data", embedded_mds, "--out", cache, "--flip",
              "--workers", "0", "--batch-size", "24", ranks=2)
    info, single = read_cache(str(cache)), read_cache(str(tiny_latent_cache))
    assert info.rows == single.rows == 288 and info.metadata["repeated_images"] == 0
    assert info.tokenizer == tokenizer_ref(tiny_tokenizer_export)
    assert info.stats.mean == pytest.approx(single.stats.mean, abs=1e-5)  # 2 ranks == 1 rank
    assert info.stats.std == pytest.approx(single.stats.std, rel=1e-4)

    _hieratok("train", "--config", "configs/generator/tiny.yaml", "--run-dir", run, f"data.path={cache}",
              "train.max_steps=200", "logging.progress=false")
    logs = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert logs[-1]["step"] == 200
    first, last = np.mean([r["loss"] for r in logs[:3]]), np.mean([r["loss"] for r in logs[-3:]])
    assert last < 0.9 * first, [r["loss"] for r in logs]
    exported = json.loads((run / "export" / "config.json").read_text())
    assert exported["tokenizer_ref"] == info.tokenizer.to_dict() and exported["latent_stats"] == info.stats.to_dict()

    args = ["sample", "--run-dir", run, "--num", "20", "--cfg-scale", "2.0", "--cfg-interval", "0.0,0.9",
            "--steps", "6", "--seed", "3", "--batch-size", "8"]
    _hieratok(*args, "--out", tmp_path / "one.npz")
    _hieratok(*args, "--out", tmp_path / "two.npz", ranks=2)
    # two runs, same seed: the same bytes, whatever the number of ranks
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with np.load(tmp_path / "one.npz") as f:
        assert f["arr_0"].shape == (20, 32, 32, 3) and f["arr_0"].dtype == np.uint8
        assert json.loads(str(f["metadata"]))["cfg_interval"] == [0.0, 0.9]
