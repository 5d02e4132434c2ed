"""End a `hieratok` process once its work is done, without the interpreter's teardown.

A finished run sometimes aborted in that teardown with "terminate called without an active exception"
(exit -6): DeepSpeed ZeRO-1 in one process after a SIGTERM stop, about 1 run in 25 on the 2-core CI
machine, and earlier a two-process FSDP2 run. faulthandler shows no Python frame by then: some
C++ object that owns a still-joinable std::thread is freed while the modules are torn down. By that
point the checkpoint is saved and every line printed, but SLURM records the job as FAILED and
torchrun reports a failed rank. So the command ends as Python's own exit would, in the same order,
and leaves out only the teardown:
  1. threading's own shutdown, as Python does before anything else: the callbacks registered with
     threading._register_atexit (which tell idle ThreadPoolExecutor workers, such as the compile
     pool that `train.compile` starts, to quit), then a wait for the non-daemon threads,
  2. run the atexit handlers: logging's flush, multiprocessing's stop of DataLoader workers,
     streaming's unlink of its shared memory, wandb's finish,
  3. flush stdout/stderr, then os._exit with the command's exit status.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_status(code) -> int:
    """What `sys.exit(code)` makes the exit status: None is 0, an int is itself, anything else is
    printed to stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _join_threads() -> None:
    shutdown = getattr(threading, "_shutdown", None)  # CPython's step 1 (private, present since 3.0)
    if shutdown is not None:
        shutdown()
        return
    for thread in threading.enumerate():  # without the executors' wake-up, an idle worker would block forever
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()


def exit_without_teardown(code) -> NoReturn:
    _join_threads()
    atexit._run_exitfuncs()  # noqa: SLF001 - CPython's own step 2 of its exit; public since 2.x, undocumented
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken pipe: nothing more can reach it
    os._exit(exit_status(code))
