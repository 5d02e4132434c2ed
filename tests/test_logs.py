"""Diagnostics go through `logging` with levels (issue 16.5): one stderr line per record in the
command's voice, a level from --log-level or HIERATOK_LOG_LEVEL, results untouched on stdout."""
import io
import json
import logging
import subprocess
import sys

import pytest

from train_runs import REPO, env, tiny_overrides
from hieratok.config.errors import ConfigError
from hieratok.logs import configure


@pytest.fixture
def restore_loggers():
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in ("hieratok", "data_pipeline", "cluster")}
    yield
    for n, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


def test_lines_name_the_command_and_the_level_filters(restore_loggers):
    out = io.StringIO()
    configure("encode", "warning", stream=out)
    configure("encode", "warning", stream=out)  # configuring twice installs one handler, not two
    logging.getLogger("hieratok.generator.latent_cache").info("hidden below the level")
    logging.getLogger("hieratok.generator.latent_cache").warning("3 image(s) were encoded twice")
    logging.getLogger("data_pipeline.loading.loader").error("a shard is unreadable")
    assert out.getvalue().splitlines() == ["hieratok encode: warning: 3 image(s) were encoded twice",
                                           "hieratok encode: error: a shard is unreadable"]
    configure("train", "info", stream=out)
    logging.getLogger("cluster.training_job").info("rank 1: preempted at step 7")
    assert out.getvalue().splitlines()[-1] == "hieratok train: rank 1: preempted at step 7"


def test_an_unknown_level_is_a_config_error_naming_it(restore_loggers, monkeypatch):
    with pytest.raises(ConfigError, match="'loud'.*debug, info, warning, error"):
        configure("train", "loud")
    proc = subprocess.run([sys.executable, "-m", "hieratok", "model-info", "--config", "tokenizer/tiny_single"],
                          cwd=REPO, env=env(HIERATOK_LOG_LEVEL="chatty"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "hieratok model-info: config error: log level 'chatty' (--log-level or HIERATOK_LOG_LEVEL): valid levels "
        "are debug, info, warning, error"]


def test_the_flag_sets_the_level_of_a_real_command(tmp_path, embedded_mds):
    """`hieratok --log-level warning train`: the stop note (info) goes; the bf16-on-CPU warning and the
    JSON summary on stdout stay."""
    overrides = tiny_overrides(embedded_mds, **{"train.max_steps": 4, "train.stop_at_step": 1,
                                                "dist.mixed_precision": "bf16"})

    def train(run, *flags):
        return subprocess.run([sys.executable, "-m", "hieratok", *flags, "train", "--config", "tokenizer/tiny_single",
                               "--run-dir", str(tmp_path / run), *overrides],
                              cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)

    for run, flags, stop_note in (("info", (), True), ("quiet", ("--log-level", "warning"), False)):
        proc = train(run, *flags)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = proc.stderr.splitlines()
        assert any(line.startswith("hieratok train: warning: dist.mixed_precision=bf16 on a CPU") for line in lines), lines
        assert any(line.startswith("hieratok train: stopped as asked") for line in lines) == stop_note, lines
        assert json.loads(proc.stdout.splitlines()[-1])["step"] == 1
