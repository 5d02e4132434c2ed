"""Preemption safety: a signal only sets a flag; the loop checkpoints at the next step boundary.

After the checkpoint is written, the handlers that were installed before ours (for example
submitit's USR2 handler, which requeues the job) are called, so a requeue never races a
half-written save. Every signal received is remembered: submitit's own preemption simulation sends
TERM and then USR2, and the requeue handler must run whichever came last.
"""
from __future__ import annotations

import signal
import threading
import warnings
from types import FrameType

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
# the order previous handlers run in: requeue-capable handlers (USR2, USR1) before a plain TERM
FORWARD_ORDER = (signal.SIGUSR2, signal.SIGUSR1, signal.SIGTERM)


class PreemptionGuard:
    def __init__(self, signals=PREEMPTION_SIGNALS):
        self.signals = tuple(signals)
        self.received_all: list[int] = []
        self._previous: dict[int, object] = {}

    def install(self) -> "PreemptionGuard":
        """Install the handlers; off the main thread (Ray trials, Train workers) Python cannot, so
        the run goes on without preemption handling, and says so."""
        if threading.current_thread() is not threading.main_thread():
            warnings.warn("not on the main thread: preemption signals are not handled by this run", stacklevel=2)
            return self
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum not in self.received_all:
            self.received_all.append(signum)

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

    def forward_to_previous_handler(self) -> bool:
        """Restore the old handlers and call those of the received signals that were Python code,
        USR2 / USR1 first. Returns True when one ran (it may well exit the process, as submitit's does)."""
        previous = dict(self._previous)
        self.uninstall()
        ran = False
        for sig in sorted(self.received_all, key=lambda s: FORWARD_ORDER.index(s) if s in FORWARD_ORDER else 99):
            handler = previous.get(sig)
            if callable(handler):
                handler(sig, None)
                ran = True
        return ran
