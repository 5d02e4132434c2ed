"""Every command answers a common user mistake with one line on stderr that names the bad thing, exit
code 2 and no traceback; HIERATOK_DEBUG=1 shows the traceback instead."""
import subprocess
import sys

from hieratok.cli import main
from train_runs import REPO, env

TINY = "configs/tokenizer/tiny_single.yaml"


def _mistakes(tmp):
    """(command line, what the one line must name)."""
    empty, a_file = tmp / "empty", tmp / "a_file"
    empty.mkdir(exist_ok=True)
    a_file.write_text("not a folder")
    nowhere = tmp / "nowhere"
    torch_home = tmp / "torch_home"
    return [
        (["train", "--config", "configs/tokenizer/nope.yaml"], "nope.yaml"),
        (["train", "--config", TINY, "--run-dir", str(tmp / "r1"), f"data.path={empty}"], str(empty)),
        (["train", "--config", TINY, "--run-dir", str(a_file), f"data.path={empty}"], str(a_file)),
        (["train", "--config", TINY, "--run-dir", str(tmp / "r2"), "train.max_stepz=3"], "max_stepz"),
        (["train", "--run-dir", str(nowhere)], str(nowhere)),
        (["eval", "--run-dir", str(nowhere), "--data", str(empty)], str(nowhere)),
        (["export", "--run-dir", str(nowhere)], str(nowhere)),
        (["sample", "--run-dir", str(nowhere), "--num", "2", "--cfg-scale", "1", "--out", str(tmp / "s.npz")],
         str(nowhere)),
        (["encode", "--tokenizer", str(nowhere), "--data", str(empty), "--out", str(tmp / "cache")], str(nowhere)),
        (["fid", "--ref", str(empty), "--gen", str(empty), "--inception-weights", str(torch_home / "w.pth")],
         str(torch_home / "w.pth")),
        (["fid", "--ref", str(empty), "--gen", str(empty)], "weights-inception"),
        (["prepare", "--src", str(nowhere), "--out", str(tmp / "shards"), "--format", "mds"], str(nowhere)),
        (["model-info", "--config", "configs/tokenizer/nope.yaml"], "nope.yaml"),
        (["config", "show", "nope"], "nope"),
        (["ablate", "--config", "configs/ablations/nope.yaml"], "nope.yaml"),
        (["sweep", "--config", "configs/sweeps/nope.yaml"], "nope.yaml"),
        (["launch", "--config", "configs/tokenizer/nope.yaml", "--executor", "local", "--dry-run"], "nope.yaml"),
    ]


def test_every_command_answers_a_mistake_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no weights anywhere
    monkeypatch.delenv("HIERATOK_DEBUG", raising=False)
    failures = []
    for argv, named in _mistakes(tmp_path):
        try:
            code = main(argv)
        except BaseException as e:  # noqa: BLE001 - any escape is a failure of this contract
            failures.append(f"{argv}: raised {type(e).__name__}: {e}")
            continue
        err = capsys.readouterr().err.strip().splitlines()
        if code != 2 or len(err) != 1 or named not in err[0] or not err[0].startswith(f"hieratok {argv[0]}"):
            failures.append(f"{argv}: exit {code}, stderr {err}")
    assert failures == [], "\n".join(failures)


def test_a_train_without_the_lpips_weights_is_one_line_too(tmp_path, embedded_mds):
    out = subprocess.run([sys.executable, "-m", "hieratok", "train", "--config", TINY, "--run-dir", str(tmp_path / "r"),
                          f"data.path={embedded_mds}", "loss.lpips.weight=1.0", "train.max_steps=2"],
                         cwd=REPO, env=env(TORCH_HOME=str(tmp_path / "th"), HIERATOK_DEBUG="0"),
                         capture_output=True, text=True, timeout=300)
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert len(err) == 1 and "vgg16-397923af.pth" in err[0] and "loss.lpips.vgg_weights" in err[0], err


def test_hieratok_debug_shows_the_traceback(tmp_path):
    run = [sys.executable, "-m", "hieratok", "export", "--run-dir", str(tmp_path / "nowhere")]
    quiet = subprocess.run(run, cwd=REPO, env=env(HIERATOK_DEBUG="0"), capture_output=True, text=True, timeout=120)
    loud = subprocess.run(run, cwd=REPO, env=env(HIERATOK_DEBUG="1"), capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert loud.returncode != 0 and "Traceback" in loud.stderr
