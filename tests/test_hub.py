"""Hugging Face Hub interop: every export carries a model card; `export --push-to-hub` uploads the
folder (tested up to the upload: no network here); `from_pretrained` takes a repo id; a repo id that
cannot be fetched is one clear line."""
import subprocess
import sys

import huggingface_hub

from hieratok.cli import main
from train_runs import REPO, env, run_train, tiny_overrides


def _trained(tmp_path, embedded_mds):
    run_dir = tmp_path / "run"
    run_train(run_dir, tiny_overrides(embedded_mds, **{"train.max_steps": 4, "eval.every_steps": 2,
                                                       "eval.metrics": "[psnr,ssim]", "eval.num_images": 16}))
    return run_dir


def test_exports_carry_a_model_card_and_push_uploads_the_folder(tmp_path, embedded_mds, monkeypatch, capsys):
    run_dir = _trained(tmp_path, embedded_mds)
    card = (run_dir / "export" / "README.md").read_text()
    assert "library_name: hieratok" in card and "# HieraTok tokenizer" in card
    assert "4 optimizer steps" in card and "| psnr |" in card and "at step 4 on split `val`" in card
    assert '"latent_channels": 8' in card

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))

    def upload_folder(self, folder_path, repo_id, **kw):
        calls.append(("upload", repo_id, sorted(p.name for p in __import__("pathlib").Path(folder_path).iterdir())))
        return "https://huggingface.co/me/tiny/commit/abc"

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    out = tmp_path / "pushed"
    assert main(["export", "--run-dir", str(run_dir), "--out", str(out), "--push-to-hub", "me/tiny", "--private"]) == 0
    assert calls[0] == ("create", "me/tiny", {"repo_type": "model", "private": True, "exist_ok": True})
    assert calls[1] == ("upload", "me/tiny", ["README.md", "config.json", "model.safetensors"])
    assert "me/tiny/commit/abc" in capsys.readouterr().out
    assert "from step 4" in (out / "README.md").read_text()

    # a repo id loads through the Hub cache (here: the folder the download would give)
    from hieratok import Tokenizer

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(out))
    assert Tokenizer.from_pretrained("me/tiny").latent_shape == (64, 8)


def test_a_repo_id_that_cannot_be_fetched_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hieratok", "eval", "--run-dir", "someone/no-such-tokenizer",
                           "--data", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf")))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and "someone/no-such-tokenizer" in lines[0] and "huggingface-cli download" in lines[0]
