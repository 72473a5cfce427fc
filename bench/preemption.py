"""Save-on-preemption: turn SLURM's (or torchrun's) stop signal into a checkpoint at a step boundary.

Hydra's submitit launcher requeues a job on the preemption/timeout signal, but saves nothing (hydra issue
2042). While a run trains, these signals only set a flag; the runner checkpoints at the next step boundary,
then hands the signal to the handler that was there before (submitit's, which requeues and exits), or stops.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

# SIGUSR2 is submitit's preemption/timeout signal, SIGUSR1 Hydra's documented one, SIGTERM what torchrun and
# schedulers send on cancellation.
SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


class Preempted(Exception):
    """The run checkpointed after a stop signal; rerunning the same command resumes it."""


class PreemptionGuard:
    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def describe(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "a stop signal on another rank"

    def hand_over(self) -> None:
        """After the checkpoint: let the previous handler act (submitit requeues), else stop the run. A rank
        that got no signal itself just stops: its launcher (or rank 0's requeue) restarts it."""
        previous = self.previous.get(self.signum) if self.signum is not None else None
        self.__exit__()
        if callable(previous):
            previous(self.signum, None)
        raise Preempted(f"stopped by {self.describe()}; checkpoint saved, rerun to resume")
