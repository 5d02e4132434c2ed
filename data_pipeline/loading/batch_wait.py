"""Waiting for a loader's next batch with a time limit and a way out.

    fetch = BatchFetcher(where="data.path /data (split train)", timeout_s=600)
    batch = fetch.next(iterator, stop=lambda: guard.requested)   # StopIteration at the epoch's end
    fetch.close()

`next(iterator)` runs on one helper thread while the caller waits in short slices, so that:
  * a loader that yields nothing for `timeout_s` seconds (0: no limit) raises DataTimeoutError
    naming the data, instead of hanging the job;
  * the caller can give up the wait when `stop()` turns true (a preemption signal): WaitAbandoned.
    An error the loader raises once `stop()` is true (Ctrl-C also reaches DataLoader workers and
    kills them) is reported as WaitAbandoned too, since it is a consequence of the stop.
The helper runs one `next()` per request and never reads ahead, so the loader's state_dict() after
a returned batch covers exactly the batches handed out; the caller is blocked meanwhile, so the
loader draws from the process RNGs in the same order as without the helper.
"""
from __future__ import annotations

import queue
import threading
import time

from data_pipeline.errors import DataError

POLL_S = 0.1  # how often a wait looks at stop(): the latency of a stop during a data wait


class DataTimeoutError(DataError):
    """The loader produced no batch within data.timeout_s."""


class WaitAbandoned(Exception):
    """stop() turned true while waiting for a batch."""


class BatchFetcher:
    def __init__(self, where: str, timeout_s: float = 0.0):
        if timeout_s is None or timeout_s < 0:
            raise DataError(f"data.timeout_s must be >= 0 seconds (0: no limit), got {timeout_s}")
        self.where, self.timeout_s = where, float(timeout_s)
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._answers: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ticket = 0  # requests made
        self._pending: tuple[object, int] | None = None  # (iterator, ticket) not answered yet

    def next(self, iterator, stop=None):
        """The next item of `iterator`; raises StopIteration, WaitAbandoned, DataTimeoutError, or
        what the loader raised. After WaitAbandoned, asking again for the same iterator resumes the
        same wait (the request is not made twice)."""
        if self._pending is None or self._pending[0] is not iterator:
            self._ticket += 1
            self._pending = (iterator, self._ticket)
            self._start()
            self._requests.put((iterator, self._ticket))
        ticket, t0 = self._pending[1], time.monotonic()
        while True:
            try:
                answer_ticket, ok, value = self._answers.get(timeout=POLL_S)
            except queue.Empty:
                if stop is not None and stop():
                    raise WaitAbandoned(f"stopped while waiting for a batch of {self.where}") from None
                waited = time.monotonic() - t0
                if self.timeout_s and waited > self.timeout_s:
                    raise DataTimeoutError(
                        f"no batch from {self.where} for {waited:.0f} s (data.timeout_s={self.timeout_s:g}): the "
                        f"loader is stalled (unreachable storage, a hung worker?); set data.timeout_s=0 to wait "
                        f"without a limit") from None
                continue
            if answer_ticket != ticket:  # the answer to an abandoned request
                continue
            self._pending = None
            if ok:
                return value
            if not isinstance(value, StopIteration) and stop is not None and stop():
                raise WaitAbandoned(f"stopped while waiting for a batch of {self.where}") from value
            raise value

    def _start(self) -> None:
        if self._thread is None:
            # a daemon: a loader stuck for good must not keep the process from exiting
            self._thread = threading.Thread(target=self._serve, name="hieratok-batch-fetch", daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            iterator, ticket = request
            try:
                self._answers.put((ticket, True, next(iterator)))
            except BaseException as e:  # noqa: BLE001 - handed to the waiting caller as it is
                self._answers.put((ticket, False, e))

    def close(self) -> None:
        """Ends the helper once its current request (if any) returns; does not wait for it."""
        if self._thread is not None:
            self._requests.put(None)
            self._thread = None
