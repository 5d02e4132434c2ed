"""A tokenizer export records its latent statistics (issue 16.3): measured on the training split with
the exported weights, equal to the statistics of the latents themselves, the same at any world size,
and usable by a generator to normalise without a latent cache. The export stands without its data."""
import json
import shutil
import subprocess
import sys

import pytest
import torch

from train_runs import REPO, env, run_train, tiny_overrides
from hieratok import Tokenizer
from hieratok.config.loader import load_config
from hieratok.generator.normalization import LatentStats

STEPS = {"train.max_steps": 2}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, embedded_mds):
    run_dir = tmp_path_factory.mktemp("stats") / "run"
    run_train(run_dir, tiny_overrides(embedded_mds, **STEPS))
    return run_dir


def _train_latents(export, data_path) -> torch.Tensor:
    """Posterior means of every training image, read in batches of another size than the export's."""
    from data_pipeline import build_loader

    cfg = load_config(REPO / "configs" / "tokenizer" / "tiny_hieratok.yaml", [f"data.path={data_path}"])
    tokenizer = Tokenizer.from_pretrained(export)
    with torch.no_grad():
        return torch.cat([tokenizer.encode(b["image"]) for b in build_loader(cfg.data, 0, 1, 0, batch_size=7, train=False)])


def test_the_export_records_the_statistics_of_its_own_latents(one_process, embedded_mds):
    export = one_process / "export"
    config = json.loads((export / "config.json").read_text())
    assert config["format"] == "hieratok-tokenizer/2" and config["scales"] == [1, 2, 4, 8]  # flat fields
    record = config["latent_stats"]
    assert Tokenizer.from_pretrained(export).latent_stats == record
    z = _train_latents(export, embedded_mds).double()
    assert record["images"] == len(z) == 144 and record["split"] == "train"  # fewer than the 256 asked: all of them
    flat = z.reshape(-1, z.shape[-1])
    torch.testing.assert_close(torch.tensor(record["mean"], dtype=torch.float64), flat.mean(0), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.tensor(record["std"], dtype=torch.float64), flat.std(0, unbiased=False),
                               rtol=1e-6, atol=1e-7)
    assert record["shift_factor"] == pytest.approx(float(z.mean()), rel=1e-6, abs=1e-8)
    assert record["scaling_factor"] == pytest.approx(1 / float(z.std(unbiased=False)), rel=1e-6)
    # a generator normalises with them, no cache needed: zero-mean, unit-std channels
    normalised = LatentStats.from_dict(record).normalize(z.float()).reshape(-1, z.shape[-1]).double()
    torch.testing.assert_close(normalised.mean(0), torch.zeros(z.shape[-1], dtype=torch.float64), rtol=0, atol=1e-5)
    torch.testing.assert_close(normalised.std(0, unbiased=False), torch.ones(z.shape[-1], dtype=torch.float64),
                               rtol=0, atol=1e-5)


def test_two_ranks_measure_what_one_does(one_process, embedded_mds, tmp_path):
    """Each rank encodes its share and the sums merge: the record equals one process's (the weights
    themselves differ between world sizes only by float reassociation)."""
    run_dir = tmp_path / "run"
    run_train(run_dir, tiny_overrides(embedded_mds, **STEPS), nproc=2)
    one = json.loads((one_process / "export" / "config.json").read_text())["latent_stats"]
    two = json.loads((run_dir / "export" / "config.json").read_text())["latent_stats"]
    assert two["images"] == one["images"]
    for key in ("mean", "std"):
        torch.testing.assert_close(torch.tensor(two[key]), torch.tensor(one[key]), rtol=1e-4, atol=1e-5)


def test_an_export_without_its_data_stands_and_says_so(one_process, embedded_mds, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(one_process, run_dir)
    cfg_file = run_dir / "config.yaml"
    cfg_file.write_text(cfg_file.read_text().replace(str(embedded_mds), str(tmp_path / "gone")))
    proc = subprocess.run([sys.executable, "-m", "hieratok", "export", "--run-dir", str(run_dir)], cwd=REPO,
                          env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "hieratok export: warning: the export at" in proc.stderr and "records no latent stats" in proc.stderr
    config = json.loads((run_dir / "export" / "config.json").read_text())
    assert "latent_stats" not in config and config["step"] == 2
    assert Tokenizer.from_pretrained(run_dir / "export").latent_stats is None


def test_zero_images_records_nothing(one_process, tmp_path):
    from hieratok.tokenizer.latent_stats import record_export_latent_stats

    export = tmp_path / "export"
    shutil.copytree(one_process / "export", export)
    cfg = load_config(one_process / "config.yaml", ["checkpoint.export_stats_images=0"])
    assert record_export_latent_stats(export, cfg) is None
