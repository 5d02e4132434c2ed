"""`prepare` killed mid-job (SIGKILL to its whole process group) and re-run: the result equals an
uninterrupted run, and the shards finished before the kill are not rewritten."""
import json
import multiprocessing as mp
import os
import signal
import time

import pytest

from data_pipeline.errors import DataError
from data_pipeline.prepare.pipeline import run_prepare
from data_pipeline.prepare.options import PrepareOptions


def _opts(out, fmt, **kw):
    kw = {"resolution": 32, "limit": 160, "samples_per_shard": 4, "split_val": 0.1, "workers": 2, **kw}
    return PrepareOptions(src="embedded", out=str(out), format=fmt, progress=False, **kw)


def _run_in_own_session(opts):
    os.setsid()  # the pool workers join this process group, so one killpg stops the whole job
    run_prepare(opts)


def _finished_shards(out, fmt):
    """shard path -> (inode, mtime_ns) of every part that has a done-marker."""
    stamps = {}
    for marker in (out / ".prepare" / "parts").glob("*.json"):
        for shard in json.loads(marker.read_text())["shards"]:
            st = (out / shard["path"]).stat()
            stamps[shard["path"]] = (st.st_ino, st.st_mtime_ns)
    return stamps


@pytest.mark.parametrize("fmt", ["wds", "mds"])
def test_killed_prepare_resumes_to_the_uninterrupted_result(tmp_path, fmt):
    reference = run_prepare(_opts(tmp_path / "reference", fmt))

    out = tmp_path / "killed"
    child = mp.get_context("fork").Process(target=_run_in_own_session, args=(_opts(out, fmt),))
    child.start()
    markers = out / ".prepare" / "parts"
    deadline = time.time() + 120
    while len(list(markers.glob("*.json")) if markers.exists() else []) < 3 and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(child.pid, signal.SIGKILL)
    child.join()
    assert not (out / "manifest.json").exists(), "the job finished before the kill; the test proves nothing"
    before = _finished_shards(out, fmt)
    assert before, "no part finished before the kill"

    resumed = run_prepare(_opts(out, fmt))
    assert resumed == reference
    after = _finished_shards(out, fmt)
    assert {p: after[p] for p in before} == before  # same inode and mtime: not rewritten
    if fmt == "mds":
        assert (out / "train" / "index.json").read_text() == (tmp_path / "reference" / "train" / "index.json").read_text()


def test_rerun_of_a_finished_job_is_a_no_op(tmp_path):
    first = run_prepare(_opts(tmp_path / "out", "wds"))
    stamps = _finished_shards(tmp_path / "out", "wds")
    assert run_prepare(_opts(tmp_path / "out", "wds", workers=1)) == first  # --workers does not shape output
    assert _finished_shards(tmp_path / "out", "wds") == stamps


def test_resume_with_other_options_is_refused(tmp_path):
    run_prepare(_opts(tmp_path / "out", "wds"))
    with pytest.raises(DataError, match="another source or other options"):
        run_prepare(_opts(tmp_path / "out", "wds", quality=80))
