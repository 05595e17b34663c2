"""Ctrl-C and SIGTERM as a request to stop after the current iteration (then save and return).

torchrun and batch schedulers send SIGTERM; a person presses Ctrl-C. Either sets a flag that the loop reads
between iterations. A second signal restores the previous handlers, so a third (or a second to a handler
that was the default) stops at once.
"""

from __future__ import annotations

import signal
import threading

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Context manager: ``with StopSignals() as stop: ... if stop.requested: ...``.

    Outside the main thread Python cannot install handlers; the flag then only changes through
    ``request()``.
    """

    def __init__(self):
        self.requested = False
        self._old: dict = {}

    def request(self) -> None:
        self.requested = True

    def _on_signal(self, signum, frame) -> None:
        self.requested = True
        self._restore()  # a second signal acts as it would without us

    def _restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.default_int_handler)
        self._old = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()
