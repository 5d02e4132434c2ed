"""The `hieratok` command ends without the interpreter's teardown, yet loses nothing Python's own exit
would keep: non-daemon threads finish (idle executor workers are told to quit, not waited on forever),
atexit handlers run, buffered output is written, and the exit status is what sys.exit would give."""
import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent("""
    import atexit, sys, threading, time
    from pathlib import Path
    from hieratok.process_exit import exit_without_teardown

    out = Path(sys.argv[1])
    atexit.register(lambda: (out / "atexit").write_text("ran"))
    def late_writer():
        time.sleep(0.3)  # still running when the exit starts
        (out / "thread").write_text("done")
    threading.Thread(target=late_writer).start()
    # an idle pool worker (torch.compile's, for one) waits for work until threading's shutdown wakes it
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(2)  # kept alive, as a library's global pool is
    pool.submit(lambda: None).result()
    sys.stdout.write("buffered, no newline")  # a pipe: block-buffered until flushed
    exit_without_teardown(eval(sys.argv[2]))
""")


@pytest.mark.parametrize("code,status", [(None, 0), (0, 0), (3, 3), ("a message", 1)])
def test_exit_keeps_threads_atexit_and_output(tmp_path, code, status):
    proc = subprocess.run([sys.executable, "-c", PROGRAM, str(tmp_path), repr(code)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == status, proc.stderr
    assert proc.stdout == "buffered, no newline"
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "done"
    assert proc.stderr == ("a message\n" if isinstance(code, str) else "")


def test_the_console_script_exits_with_the_commands_status():
    ok = subprocess.run([sys.executable, "-m", "hieratok", "--version"], capture_output=True, text=True, timeout=120)
    bad = subprocess.run([sys.executable, "-m", "hieratok", "train", "--config", "no-such-preset"],
                         capture_output=True, text=True, timeout=120)
    usage = subprocess.run([sys.executable, "-m", "hieratok", "--no-such-flag"], capture_output=True, text=True,
                           timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("hieratok ")
    assert bad.returncode == 2 and "no-such-preset" in bad.stderr
    assert usage.returncode == 2 and "--no-such-flag" in usage.stderr
