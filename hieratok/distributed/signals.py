"""Preemption safety: SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 stop a run cleanly whenever they come.

The first signal only sets a flag (`requested`); the loop acts on it at its next safe point: at a
step boundary all ranks agree and checkpoint, and a single process also leaves a data wait or a
periodic evaluation at once, keeping the last completed step (loop.py). During setup (`raising()`)
the handler raises SignalStop instead: nothing has been trained yet that a checkpoint would keep.

The same signal a second time exits at once, with status 128 + its number and no checkpoint (a
half-written one is never published, so `latest` stays good). A watcher thread, woken through
`signal.set_wakeup_fd`, sees each signal as it arrives, even while the main thread sits in native
code that runs no Python handler (a collective whose peer is gone): it says what the first one
does, and makes the second one exit.

After a stop, the handlers that were installed before ours (for example submitit's USR2 handler,
which requeues the job) are called, so a requeue never races a half-written save. Every signal
received is remembered: submitit's own preemption simulation sends TERM and then USR2, and the
requeue handler must run whichever came last; so TERM then USR2 is two first signals, not a repeat.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import warnings
from types import FrameType

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
# the order previous handlers run in: requeue-capable handlers (USR2, USR1) before a plain TERM
FORWARD_ORDER = (signal.SIGUSR2, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


class SignalStop(BaseException):
    """Raised inside `raising()`. A BaseException, as KeyboardInterrupt is, so that library code
    that catches Exception does not swallow it."""


def _say(message: str) -> None:
    os.write(2, f"hieratok: {message}\n".encode())  # unbuffered: safe from a handler or the watcher


class PreemptionGuard:
    def __init__(self, signals=PREEMPTION_SIGNALS):
        self.signals = tuple(signals)
        self.received_all: list[int] = []
        self.first_at: float | None = None  # time.monotonic() of the first signal
        self._previous: dict[int, object] = {}
        self._counts: dict[int, int] = {}
        self._raising = False
        self._watcher: _Watcher | None = None

    def install(self) -> "PreemptionGuard":
        """Install the handlers; off the main thread (Ray trials, Train workers) Python cannot, so
        the run goes on without preemption handling, and says so."""
        if threading.current_thread() is not threading.main_thread():
            warnings.warn("not on the main thread: preemption signals are not handled by this run", stacklevel=2)
            return self
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        self._watcher = _Watcher.start(self.signals, self._count)
        return self

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._watcher is None:
            self._count(signum)
        if signum not in self.received_all:
            self.received_all.append(signum)
        if self.first_at is None:
            self.first_at = time.monotonic()
        if self._raising:
            self._raising = False  # once: the clean-up that follows is not interrupted again
            raise SignalStop(signum)

    def _count(self, signum: int) -> None:
        """Every delivery of our signals, from the watcher (or from the handler without one)."""
        n = self._counts[signum] = self._counts.get(signum, 0) + 1
        name = signal.Signals(signum).name
        if n == 1:
            _say(f"{name} received: stopping at the next safe point, with a checkpoint if there is "
                 f"progress to keep; {name} again exits at once")
        else:
            _say(f"{name} again: exiting now, without a checkpoint")
            os._exit(128 + signum)

    @contextlib.contextmanager
    def raising(self):
        """Inside, a signal raises SignalStop at once (one that came before raises on entry)."""
        if self.requested:
            raise SignalStop(self.received)
        self._raising = True
        try:
            yield
        finally:
            self._raising = False

    @property
    def received(self) -> int | None:
        return self.received_all[-1] if self.received_all else None

    @property
    def requested(self) -> bool:
        return bool(self.received_all)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def forward_to_previous_handler(self) -> bool:
        """Restore the old handlers and call those of the received signals that were Python code,
        USR2 / USR1 first. Returns True when one ran (it may well exit the process, as submitit's does).
        Python's default SIGINT handler is not called: it would raise KeyboardInterrupt for a stop
        that has been handled."""
        previous = dict(self._previous)
        self.uninstall()
        ran = False
        for sig in sorted(self.received_all, key=lambda s: FORWARD_ORDER.index(s) if s in FORWARD_ORDER else 99):
            handler = previous.get(sig)
            if callable(handler) and handler is not signal.default_int_handler:
                handler(sig, None)
                ran = True
        return ran


class _Watcher:
    """Reads the signal numbers that Python's C-level handler writes to the wakeup fd, on a thread
    of its own, and passes ours on. Bytes are forwarded to a wakeup fd that was set before."""

    def __init__(self, reader: socket.socket, writer: socket.socket, previous_fd: int, signals, on_signal):
        self.reader, self.writer, self.previous_fd = reader, writer, previous_fd
        self.signals, self.on_signal = set(int(s) for s in signals), on_signal
        threading.Thread(target=self._run, name="hieratok-signal-watch", daemon=True).start()

    @classmethod
    def start(cls, signals, on_signal) -> "_Watcher | None":
        reader, writer = socket.socketpair()
        writer.setblocking(False)  # set_wakeup_fd requires it
        try:
            previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError):  # the handlers alone then count the signals
            reader.close()
            writer.close()
            return None
        return cls(reader, writer, previous, signals, on_signal)

    def _run(self) -> None:
        with self.reader:
            while True:
                try:
                    data = self.reader.recv(64)
                except OSError:
                    return
                if not data:  # stop() closed the writer
                    return
                if self.previous_fd >= 0:
                    with contextlib.suppress(OSError):
                        os.write(self.previous_fd, data)
                for signum in data:
                    if signum in self.signals:
                        self.on_signal(signum)

    def stop(self) -> None:
        signal.set_wakeup_fd(self.previous_fd)
        self.writer.close()
