"""The package installs as a wheel (not editable) and works from any folder: presets by name through
the package, `model-info`, `config show` and a 2-step tiny training outside the checkout."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_the_wheel_works_outside_the_checkout(tmp_path, embedded_mds):
    wheels, site, src = tmp_path / "wheels", tmp_path / "site", tmp_path / "src"
    # build from a copy of the source files (tracked or new, not ignored): the build leaves the checkout as it was
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout
    src.mkdir()
    subprocess.run(["tar", "--null", "-T", "-", "-cf", str(tmp_path / "src.tar")], cwd=REPO, input=files, check=True)
    subprocess.run(["tar", "-xf", str(tmp_path / "src.tar")], cwd=src, check=True)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(src)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(wheels.glob("hieratok-*.whl"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), WANDB_MODE="disabled", OMP_NUM_THREADS="1")

    def hieratok(*args):
        out = subprocess.run([sys.executable, "-m", "hieratok", *map(str, args)], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"hieratok {args[0]}: {out.stderr[-3000:]}"
        return out.stdout

    where = subprocess.run([sys.executable, "-c", "import hieratok; print(hieratok.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(site)), where  # the installed copy, not the checkout
    assert "latent_shape: [256, 16]" in hieratok("model-info", "--config", "tokenizer/hieratok_s_b16")
    assert "hiera_depth" in hieratok("config", "show", "tokenizer/tiny_single")
    assert "ablations/cpu" in hieratok("config", "list")
    hieratok("train", "--config", "tokenizer/tiny_single", "--run-dir", elsewhere / "run", f"data.path={embedded_mds}",
             "train.max_steps=2", "train.global_batch_size=8", "train.micro_batch_size=8", "logging.progress=false",
             "data.num_workers=0")
    assert (elsewhere / "run" / "export" / "model.safetensors").exists()
