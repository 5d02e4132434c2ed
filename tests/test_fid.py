"""FID core: agreement with torch-fidelity, statistics reuse, clear errors on missing weights."""
import json

import numpy as np
import pytest
import torch

from hieratok.cli import main
from hieratok.eval.inception import INCEPTION_FILE, resolve_inception_weights


def _run_cli(capsys, *argv) -> dict:
    assert main(["fid", *map(str, argv)]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_fid_isc_kid_agree_with_torch_fidelity_and_stats_are_reusable(capsys, tmp_path, fid_image_sets,
                                                                      test_inception_weights):
    """Same two folders, same test-made (calibrated) weights: ours == torch_fidelity.calculate_metrics."""
    import torch_fidelity

    ref_dir, gen_dir = fid_image_sets["smooth"][0], fid_image_sets["noise"][0]
    stats = tmp_path / "ref_stats.npz"
    ours = _run_cli(capsys, "--ref", ref_dir, "--gen", gen_dir, "--inception-weights", test_inception_weights,
                    "--batch-size", 3, "--save-stats", stats, "--out", tmp_path / "fid.json")
    theirs = torch_fidelity.calculate_metrics(
        input1=str(gen_dir), input2=str(ref_dir), fid=True, isc=True, kid=True, cuda=False, cache=False,
        verbose=False, save_cpu_ram=True, feature_extractor_weights_path=str(test_inception_weights),
        isc_splits=3, kid_subset_size=6)
    assert ours["fid"] > 1.0, "calibrated weights must give a clearly non-zero FID between different sets"
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-3)
    assert ours["isc_mean"] > 1.01 and ours["isc_splits"] == 3
    assert ours["isc_mean"] == pytest.approx(theirs["inception_score_mean"], rel=1e-3)
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-3, abs=1e-6)
    assert ours["num_ref"] == ours["num_gen"] == 6
    assert json.loads((tmp_path / "fid.json").read_text()) == ours
    weights = ours["protocol"]["inception_weights"]
    assert weights["test_made"] and "NOT comparable" in weights["test_made_note"]

    # the saved reference statistics give the same FID without re-reading the reference images
    again = _run_cli(capsys, "--ref", stats, "--gen", gen_dir, "--inception-weights", test_inception_weights,
                     "--batch-size", 4)
    assert again["fid"] == pytest.approx(ours["fid"], rel=1e-9)
    assert "kid" in again["notes"][0] and "kid_mean" not in again
    assert again["protocol"]["reference"]["made_from"]["path"] == str(ref_dir.resolve())


def test_missing_inception_weights_name_the_file_and_the_offline_fix(monkeypatch, tmp_path, capsys, fid_image_sets):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises(FileNotFoundError) as e:
        resolve_inception_weights(None)
    msg = str(e.value)
    assert INCEPTION_FILE in msg and "hub" in msg and "--inception-weights" in msg
    with pytest.raises(FileNotFoundError, match="not found: .*nope.pth"):
        resolve_inception_weights(tmp_path / "nope.pth")
    d = fid_image_sets["smooth"][0]
    assert main(["fid", "--ref", str(d), "--gen", str(d)]) == 2
    assert INCEPTION_FILE in capsys.readouterr().err


def test_weights_in_the_hub_cache_are_found(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = tmp_path / "hub" / "checkpoints" / INCEPTION_FILE
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert resolve_inception_weights(None) == target


def test_not_an_inception_file_is_reported(tmp_path):
    from hieratok.eval.inception import load_inception

    bogus = tmp_path / "bogus.pth"
    torch.save({"fc.weight": torch.zeros(2)}, bogus)
    with pytest.raises(ValueError, match="not a torch-fidelity Inception weights file"):
        load_inception(bogus)


def test_bad_metric_and_mixed_sizes_are_reported(capsys, tmp_path, fid_image_sets, test_inception_weights):
    from PIL import Image

    d = fid_image_sets["smooth"][0]
    assert main(["fid", "--ref", str(d), "--gen", str(d), "--metrics", "fid,prc",
                 "--inception-weights", str(test_inception_weights)]) == 2
    assert "prc" in capsys.readouterr().err
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (32, 32)).save(mixed / "a.png")
    Image.new("RGB", (16, 32)).save(mixed / "b.png")
    assert main(["fid", "--ref", str(mixed), "--gen", str(d), "--metrics", "fid",
                 "--inception-weights", str(test_inception_weights)]) == 2
    assert "differ in size" in capsys.readouterr().err


def test_npz_images_read_like_the_folder(tmp_path, fid_image_sets):
    """ADM layout (arr_0 uint8 NHWC), stored or compressed, gives the folder's uint8 tensors."""
    from hieratok.eval.image_sources import open_image_source

    folder, images = fid_image_sets["noise"]
    nhwc = images.permute(0, 2, 3, 1).numpy()
    np.savez(tmp_path / "plain.npz", nhwc)
    np.savez_compressed(tmp_path / "packed.npz", nhwc)
    from_folder = torch.cat(list(open_image_source(folder).iter_batches(3)))
    assert torch.equal(from_folder, images)
    for name in ("plain.npz", "packed.npz"):
        src = open_image_source(tmp_path / name)
        assert src.num_images == 6
        assert torch.equal(torch.cat(list(src.iter_batches(3))), images)
        assert torch.equal(torch.cat(list(src.iter_batches(3, start_batch=1, stop_batch=2))), images[3:6])


def test_reference_from_prepared_shards(capsys, embedded_mds, fid_image_sets, test_inception_weights):
    """SHARDS as --ref: data_pipeline's eval loader (centre crop), quantised to uint8 like PNGs."""
    result = _run_cli(capsys, "--ref", embedded_mds, "--gen", fid_image_sets["noise"][0], "--metrics", "fid",
                      "--num", 2, "--resolution", 32, "--inception-weights", test_inception_weights)
    assert result["num_ref"] == result["num_gen"] == 2 and result["fid"] > 0
    assert result["protocol"]["reference"]["kind"] == "shards"
