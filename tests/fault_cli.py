"""`hieratok` with test-only faults, set from the environment, so that neither the user's config
schema nor the training loop carries a test hook.

    HIERATOK_FAULT_NAN_LOSS=5,6   the task's loss is NaN at optimizer steps 5 and 6
    HIERATOK_FAULT_NAN_AUX=5      only the auxiliary (GAN discriminator) loss is NaN at step 5

Holds: the process stays in one phase, so that a test can signal it there, and writes the phase's
name to the file HIERATOK_FAULT_MARK when it gets there (the event the test waits for):

    HIERATOK_FAULT_HOLD=setup          building the training loader, until the process ends
    HIERATOK_FAULT_HOLD=data:6         the 6th training micro-batch never arrives (the loader stalls)
    HIERATOK_FAULT_HOLD=eval           the first held-out batch of a periodic evaluation never arrives
    HIERATOK_FAULT_HOLD=checkpoint:2   the 2nd checkpoint write pauses until a stop signal is recorded
    HIERATOK_FAULT_HOLD=native:2       the 2nd checkpoint write blocks in native code for good, as a
                                       collective whose peer is gone does (Python handlers never run)
    HIERATOK_FAULT_HOLD=staged:2       the 2nd checkpoint's tensors are in its staging folder, not yet
                                       published: every rank sleeps there until it is killed (or the cap)
    HIERATOK_FAULT_STOP_GRACE_S=1      with several ranks, give up a data wait 1 s after a stop signal

The checkpoint holds act after the backend's save (any backend) has written the rank's part.
Run it as the CLI is run: `python tests/fault_cli.py train ...`, or under torchrun.
"""
from __future__ import annotations

import ctypes
import functools
import os
import time

from hieratok.cli import entry
from hieratok.generator.task import GeneratorTask
from hieratok.tokenizer.task import TokenizerTask

HOLD_CAP_S = 600  # a hold gives up after this, so that a broken test cannot leave a process for good
_guards: list = []  # the trainer's PreemptionGuard, seen through its install()


def _steps(name: str) -> set[int]:
    return {int(s) for s in os.environ.get(name, "").split(",") if s.strip()}


def _nan_loss_at(steps: set[int]):
    def wrap(compute_loss):
        @functools.wraps(compute_loss)
        def wrapper(self, model, batch, step):
            loss, terms = compute_loss(self, model, batch, step)
            if step in steps:
                loss = loss * float("nan")
                terms["loss"] = loss.detach()
            return loss, terms
        return wrapper
    return wrap


def _nan_aux_at(steps: set[int]):
    def wrap(aux_losses):
        @functools.wraps(aux_losses)
        def wrapper(self, step):
            out = aux_losses(self, step)
            if step in steps:
                out = {name: (loss * float("nan"), {**terms, "disc_loss": (loss * float("nan")).detach()})
                       for name, (loss, terms) in out.items()}
            return out
        return wrapper
    return wrap


def _mark(phase: str) -> None:
    path = os.environ.get("HIERATOK_FAULT_MARK")
    if path:
        tmp = f"{path}.{os.getpid()}.tmp"  # one per process: ranks may mark at once
        with open(tmp, "w") as f:
            f.write(phase)
        os.replace(tmp, path)  # the test never reads a half-written mark


def _hold(phase: str, until=lambda: False) -> None:
    """Stay here (in Python: signal handlers run) until `until()` or the cap."""
    _mark(phase)
    deadline = time.monotonic() + HOLD_CAP_S
    while not until() and time.monotonic() < deadline:
        time.sleep(0.01)


def _hold_native(phase: str) -> None:
    """Lock a plain pthread mutex twice: a deadlock in C that no signal ends (ctypes drops the GIL)."""
    libc = ctypes.CDLL(None)
    mutex = ctypes.create_string_buffer(64)  # zeroed: PTHREAD_MUTEX_INITIALIZER on glibc
    libc.pthread_mutex_lock(mutex)
    _mark(phase)
    libc.pthread_mutex_lock(mutex)


class _HeldLoader:
    """The loader as it is, except that its `hold_at`-th batch (counted over epochs) never comes."""

    def __init__(self, loader, hold_at: int, phase: str):
        self._loader, self._hold_at, self._phase, self._count = loader, hold_at, phase, 0

    def __len__(self):
        return len(self._loader)

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def __iter__(self):
        for batch in self._loader:
            self._count += 1
            if self._count == self._hold_at:
                _hold(self._phase)
            yield batch


def _install_holds(spec: str) -> None:
    import data_pipeline.loading.loader as loader_module
    from hieratok.train.checkpoint import Checkpointer
    from hieratok.distributed.signals import PreemptionGuard

    phase, _, n = spec.partition(":")
    n = int(n or 1)
    build = loader_module.build_loader

    def build_loader(*args, train: bool = True, **kwargs):
        if phase == "setup" and train:
            _hold("setup")
        loader = build(*args, train=train, **kwargs)
        if (phase == "data" and train) or (phase == "eval" and not train):
            return _HeldLoader(loader, n, phase)
        return loader

    loader_module.build_loader = build_loader  # `from data_pipeline import build_loader` reads it here

    install = PreemptionGuard.install
    PreemptionGuard.install = lambda self: _guards.append(self) or install(self)

    saves = {"n": 0}
    init = Checkpointer.__init__

    def held_init(self, *args, **kwargs):  # wraps this run's backend's save, whichever backend it is
        init(self, *args, **kwargs)
        save = self.backend.save

        def held_save(folder):
            save(folder)
            saves["n"] += 1
            if saves["n"] == n and phase == "checkpoint":
                _hold("checkpoint", until=lambda: any(g.requested for g in _guards))
            elif saves["n"] == n and phase == "native":
                _hold_native("native")
            elif saves["n"] == n and phase == "staged":
                _hold("staged")  # no signal ends it: the test kills the process here

        self.backend.save = held_save

    Checkpointer.__init__ = held_init


if __name__ == "__main__":
    for task in (TokenizerTask, GeneratorTask):
        task.compute_loss = _nan_loss_at(_steps("HIERATOK_FAULT_NAN_LOSS"))(task.compute_loss)
    TokenizerTask.aux_losses = _nan_aux_at(_steps("HIERATOK_FAULT_NAN_AUX"))(TokenizerTask.aux_losses)
    if os.environ.get("HIERATOK_FAULT_HOLD"):
        _install_holds(os.environ["HIERATOK_FAULT_HOLD"])
    if os.environ.get("HIERATOK_FAULT_STOP_GRACE_S"):
        import hieratok.train.loop as loop

        loop.STOP_GRACE_S = float(os.environ["HIERATOK_FAULT_STOP_GRACE_S"])
    entry()  # as the console script ends
