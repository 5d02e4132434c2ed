"""`hieratok sample`: ADM-layout npz, balanced labels, recorded guidance, reproducible bytes, clear errors."""
import json

import numpy as np
import pytest
import torch

from hieratok.cli import main
from hieratok.config.loader import load_config
from hieratok.generator.images import to_uint8_nhwc
from hieratok.generator.sample_run import load_bundle, sample_to_npz
from hieratok.generator.task import GeneratorTask

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def generator_run(tmp_path_factory, tiny_latent_cache):
    """A run dir whose export is a (randomly perturbed, untrained) tiny generator of the tiny cache."""
    run = tmp_path_factory.mktemp("generator_run")
    task = GeneratorTask(load_config("configs/generator/tiny.yaml", [f"data.path={tiny_latent_cache}"]))
    torch.manual_seed(0)
    model = task.build_model()
    for p in model.parameters():  # away from adaLN-zero, so guidance and noise visibly matter
        torch.nn.init.normal_(p, std=0.05)
    task.export(model.state_dict(), run / "export")
    return run


def test_samples_file_layout_labels_and_metadata(tmp_path, generator_run):
    out = tmp_path / "samples.npz"
    meta = sample_to_npz(generator_run, out, num=35, cfg_scale=3.0, cfg_interval=(0.1, 0.8), steps=3,
                         sampler="euler", seed=5, batch_size=16, png_dir=tmp_path / "png")
    with np.load(out, allow_pickle=False) as f:
        images, labels, recorded = f["arr_0"], f["labels"], json.loads(str(f["metadata"]))
    assert images.shape == (35, 32, 32, 3) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=16).max() - np.bincount(labels, minlength=16).min() <= 1
    assert recorded == meta and recorded["cfg_scale"] == 3.0 and recorded["cfg_interval"] == [0.1, 0.8]
    assert (recorded["steps"], recorded["sampler"], recorded["seed"]) == (3, "euler", 5)
    assert len(list((tmp_path / "png").glob("*.png"))) == 35
    assert not list(tmp_path.glob(".samples.npz*"))  # part files are merged away
    assert images.std() > 0  # not a constant image


def test_same_seed_same_bytes_other_seed_other_images(tmp_path, generator_run):
    kw = dict(num=6, cfg_scale=2.0, steps=2, sampler="heun", batch_size=4)
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        sample_to_npz(generator_run, tmp_path / f"{name}.npz", seed=seed, **kw)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert not np.array_equal(np.load(tmp_path / "a.npz")["arr_0"], np.load(tmp_path / "c.npz")["arr_0"])


def test_guidance_scale_one_equals_sampling_the_conditional_model_alone(tmp_path, generator_run):
    """Through the whole pipeline (noise, ODE, un-normalisation, decoding): scale 1 is the conditional model."""
    sample_to_npz(generator_run, tmp_path / "g1.npz", num=4, cfg_scale=1.0, steps=2, sampler="euler", seed=0)
    bundle = load_bundle(generator_run)
    from hieratok.generator.sampler import balanced_labels, per_sample_noise

    x, labels = per_sample_noise(0, range(4), (64, 8)), balanced_labels(4, 16)
    with torch.no_grad():
        for t, t_next in ((1.0, 0.5), (0.5, 0.0)):
            x = x + (t_next - t) * bundle.model(x, torch.full((4,), t), labels)
        expected = to_uint8_nhwc(bundle.tokenizer.decode(bundle.stats.denormalize(x)))
    np.testing.assert_array_equal(np.load(tmp_path / "g1.npz")["arr_0"], expected)


def test_cli_errors_are_clear(tmp_path, generator_run, capsys):
    assert main(["sample", "--run-dir", str(tmp_path / "missing"), "--num", "2", "--cfg-scale", "1",
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "no generator export" in capsys.readouterr().err
    assert main(["sample", "--run-dir", str(generator_run), "--num", "2", "--cfg-scale", "1.5",
                 "--cfg-interval", "0.8,0.2", "--out", str(tmp_path / "x.npz")]) == 2
    assert "guidance interval" in capsys.readouterr().err


def test_python_sampling_gives_the_bytes_of_the_cli_file(tmp_path, generator_run):
    from hieratok import Generator

    out = tmp_path / "cli.npz"
    sample_to_npz(generator_run, out, num=10, cfg_scale=2.0, steps=3, sampler="heun", seed=4, batch_size=4)
    model = Generator.from_pretrained(generator_run)  # a run dir or its export
    images = model.sample([i % model.config.num_classes for i in range(10)], cfg_scale=2.0, steps=3, seed=4,
                          batch_size=4)
    assert images.dtype == np.uint8 and images.shape == (10, 32, 32, 3)
    assert np.array_equal(images, np.load(out)["arr_0"])
    with pytest.raises(ValueError, match="from_pretrained"):
        Generator(model.config).sample([0])


def _stderr_on_a_terminal(args) -> str:
    """Run `hieratok ARGS` with stderr on a pseudo-terminal, as a user at a shell sees it."""
    import os
    import pty
    import subprocess
    import sys

    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal has a size
    proc = subprocess.Popen([sys.executable, "-m", "hieratok", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=slave, env=dict(os.environ, OMP_NUM_THREADS="1"))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    return b"".join(chunks).decode(errors="replace")


def test_a_progress_bar_on_a_terminal_and_none_with_no_progress(tmp_path, generator_run):
    args = ["sample", "--run-dir", generator_run, "--num", "6", "--cfg-scale", "1.5", "--steps", "2",
            "--batch-size", "2", "--out", tmp_path / "s.npz"]
    shown = _stderr_on_a_terminal(args)
    assert "sample:" in shown and "3/3" in shown, shown[-1000:]
    assert "sample:" not in _stderr_on_a_terminal([*args, "--no-progress"])
