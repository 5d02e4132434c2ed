"""`hieratok eval` on prepared shards: metrics plus the protocol they were computed under."""
import json

import pytest
import torch

from hieratok.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run dir holding only export/: a random-init tiny tokenizer (32 px, like embedded_mds)."""
    from hieratok.config.loader import load_config
    from hieratok.tokenizer.model import Tokenizer

    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    Tokenizer(load_config("configs/tokenizer/tiny_hieratok.yaml").model).save_pretrained(run / "export")
    return run


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_writes_metrics_and_protocol(capsys, tmp_path, run_dir, embedded_mds, test_inception_weights):
    from hieratok.eval.weights_for_tests import make_test_lpips_heads, make_test_vgg16_weights

    vgg, heads = make_test_vgg16_weights(tmp_path / "vgg.pth"), make_test_lpips_heads(tmp_path / "heads.pth")
    out = tmp_path / "metrics.json"
    assert main(["eval", "--run-dir", str(run_dir), "--data", str(embedded_mds), "--num", "3", "--batch-size", "2",
                 "--inception-weights", str(test_inception_weights), "--vgg-weights", str(vgg),
                 "--lpips-heads", str(heads), "--out", str(out)]) == 0
    result = _last_json(capsys)
    assert json.loads(out.read_text()) == result
    assert result["num_images"] == 3
    assert result["rfid"] > 0 and 0 < result["ssim"] < 1 and result["lpips"] > 0 and result["psnr"] > 0
    p = result["protocol"]
    assert p["resolution"] == 32 and p["split"] == "val" and p["split_size"] == 48 and p["num_images"] == 3
    assert "centre 32x32 crop" in p["crop"] and p["format"] == "mds"
    assert p["rfid_reference"].startswith("the same validation images")
    assert p["model"] == str((run_dir / "export").resolve())
    assert p["test_made_weights"] and "NOT comparable" in p["warning"]
    assert set(p["weights"]) == {"inception", "lpips_vgg16", "lpips_heads"}


def test_eval_accepts_an_export_dir_and_defaults_its_output(capsys, run_dir, embedded_mds):
    assert main(["eval", "--run-dir", str(run_dir / "export"), "--data", str(embedded_mds), "--num", "5",
                 "--metrics", "psnr,ssim"]) == 0
    result = _last_json(capsys)
    assert result["num_images"] == 5 and set(result) == {"psnr", "ssim", "num_images", "protocol"}
    assert not result["protocol"]["test_made_weights"] and result["protocol"]["rfid_reference"] is None
    assert main(["eval", "--run-dir", str(run_dir), "--data", str(embedded_mds), "--num", "2",
                 "--metrics", "psnr"]) == 0
    assert json.loads((run_dir / "eval" / "metrics.json").read_text())["num_images"] == 2


def test_eval_reports_bad_input_clearly(capsys, monkeypatch, tmp_path, run_dir, embedded_mds):
    assert main(["eval", "--run-dir", str(tmp_path), "--data", str(embedded_mds), "--metrics", "psnr"]) == 2
    assert "hieratok export --run-dir" in capsys.readouterr().err  # names the missing export and the fix
    assert main(["eval", "--run-dir", str(run_dir), "--data", str(embedded_mds), "--metrics", "psnr,fidd"]) == 2
    assert "fidd" in capsys.readouterr().err
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    assert main(["eval", "--run-dir", str(run_dir), "--data", str(embedded_mds), "--metrics", "rfid"]) == 2
    assert "weights-inception-2015-12-05-6726825d.pth" in capsys.readouterr().err
