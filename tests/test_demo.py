"""`hieratok demo --quick` end to end through the ablation machinery: shards, both tokenizers as Ray
trials, held-out scores beside the floors, latent analysis and a report with every picture and figure,
labelled when test-made weights scored it."""
import json
import subprocess
import sys

import pytest
from PIL import Image

from train_runs import REPO, env


@pytest.mark.timeout(1200)
def test_quick_demo_writes_a_complete_report(tmp_path):
    out = tmp_path / "demo_out"
    proc = subprocess.run([sys.executable, "-m", "hieratok", "demo", "--quick", "--out", str(out)], cwd=REPO,
                          env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-6000:]
    report = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for picture in ("loss_curves.png", "reconstructions.png", "latent_space.png"):
        assert picture in report and picture in html
        with Image.open(out / picture) as im:
            assert im.width > 200 and im.height > 100
    summary = json.loads((out / "summary.json").read_text())
    for name in ("single-scale (ViTok)", "HieraTok"):
        for metric in ("rfid", "psnr", "ssim", "lpips"):
            assert isinstance(summary["eval"][name][metric], float)
        assert summary["latent"][name]["isotropy"] > 0
    assert "TEST-MADE" in summary["weights"] and "TEST-MADE" in report  # never silently faked
    assert "hieratok launch" in report and "--executor slurm" in report
    assert "hieratok ablate --config ablations/demo" in report  # the ablation runner trained and scored them
    results = json.loads((out / "ablation" / "results.json").read_text())
    assert set(results["arms"]) == {"single-scale", "hieratok"} and results["protocol"]["quick"]
    assert summary["eval"]["HieraTok"] == results["arms"]["hieratok"]["seeds"]["0"]
    assert "patch_pca (baseline)" in report and "bicubic (baseline)" in report  # the floors beside the arms
    assert "uniformity" in proc.stdout and "report:" in proc.stdout
