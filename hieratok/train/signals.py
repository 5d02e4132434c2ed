"""Preemption safety: a signal only sets a flag; the loop checkpoints at the next step boundary.

After the checkpoint is written, the handler that was installed before ours (for example
submitit's, which requeues the job) is called, so a requeue never races a half-written save.
"""
from __future__ import annotations

import signal
from types import FrameType

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class PreemptionGuard:
    def __init__(self, signals=PREEMPTION_SIGNALS):
        self.signals = tuple(signals)
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> "PreemptionGuard":
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    @property
    def requested(self) -> bool:
        return self.received is not None

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def forward_to_previous_handler(self) -> bool:
        """Restore the old handlers and call the one for the received signal, if it was Python code.

        Returns True when a previous handler ran (it may well exit the process, as submitit's does).
        """
        sig = self.received
        previous = self._previous.get(sig) if sig is not None else None
        self.uninstall()
        if callable(previous):
            previous(sig, None)
            return True
        return False
