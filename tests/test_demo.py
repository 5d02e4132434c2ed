"""`hieratok demo --quick` end to end: shards, 2-process training of both tokenizers, evaluation,
latent analysis and a report with every picture and figure, labelled when test-made weights scored it."""
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
    assert "torchrun --nproc_per_node=2" in report  # trained on 2 processes
    assert "uniformity" in proc.stdout and "report:" in proc.stdout
