"""The process's one torch thread count. torch's setting is process-wide: runs training at once in one process (the
main run and its SGD race) run on whatever count was set last, by either of them. So one policy owns it, and every
run leases it."""

from __future__ import annotations

import os
import statistics
import threading
from collections import deque

import torch

from engine.training.config import ConfigError


class ThreadTuner:
    """Chooses 1 or 2 intra-op threads by measuring step times as the run goes. On an idle 2-core machine two
    threads are ~1.3x faster; when anything else wants a core (a viewer's page rerun, another process) they are
    2-5x slower, since each op waits for its slower half. So: try the other count for a few steps now and then
    (and at once when steps slow down), keep the faster, and give up a try when a step comes out far slower."""

    FIRST_TRY, PERIOD, TRIAL = 20, 200, 8

    def __init__(self, threads: int) -> None:
        most = min(2, os.cpu_count() or 1)
        self.choices = (threads,) if threads else tuple(sorted({1, most}))
        self.current = self.choices[-1]
        self.times: dict[int, deque[float]] = {n: deque(maxlen=16) for n in self.choices}
        self.on_current, self.tried, self.trying = 0, False, False

    def _use(self, threads: int) -> None:
        self.current, self.on_current = threads, 0

    def _slowed_down(self, other: int) -> bool:
        """Steps now take far longer than the other count's did when last tried (viewers arrived, say): try it
        again now rather than at the next period."""
        recent, known = self.times[self.current], self.times[other]
        fresh = self.on_current >= len(recent) == recent.maxlen  # every step in the window ran on this count
        return fresh and bool(known) and statistics.fmean(recent) > 1.5 * statistics.fmean(known)

    def record(self, step_seconds: float) -> None:
        if len(self.choices) == 1:
            return
        self.times[self.current].append(step_seconds)
        self.on_current += 1
        other = self.choices[0] if self.current == self.choices[1] else self.choices[1]
        if self.trying:
            # means, not medians: under intermittent contention most steps with two threads are fast and a few
            # stall for far longer, and the stalls are what cost the time
            baseline = statistics.fmean(self.times[other])
            if self.on_current >= self.TRIAL or step_seconds > 3 * baseline:
                trial = statistics.fmean(list(self.times[self.current])[-self.on_current :])
                self.trying = False
                self._use(self.current if trial < baseline else other)
        elif self.on_current >= (self.PERIOD if self.tried else self.FIRST_TRY) or self._slowed_down(other):
            self.trying = self.tried = True
            self.times[other].clear()
            self._use(other)


class ThreadLease:
    """One run's share of the thread count. Its training thread calls `record` after each step: that also applies
    the count there (torch keeps a count per thread once the thread has begun computing, and a new thread starts
    from the last one set anywhere)."""

    def __init__(self, policy: ThreadPolicy, threads: int) -> None:
        self.policy, self.threads = policy, threads
        self.tuner = ThreadTuner(threads)

    def record(self, step_seconds: float) -> None:
        count = self.policy.record(self, step_seconds)
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)

    def release(self) -> None:
        self.policy.release(self)

    def __enter__(self) -> ThreadLease:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class ThreadPolicy:
    """A run asking for a fixed count gets it, and another fixed count cannot train beside it (each would change the
    other's rounding); a run that measures (threads 0) switches counts only while it trains alone, and runs that
    all measure share one thread each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: list[ThreadLease] = []

    def lease(self, threads: int) -> ThreadLease:
        """ConfigError when a run with another fixed count is training in this process. The count is set here too,
        so a training thread started next begins with it."""
        with self._lock:
            taken = {lease.threads for lease in self._leases if lease.threads}
            if threads and taken - {threads}:
                raise ConfigError(
                    f"another run in this process is training with {taken.pop()} threads; a run beside "
                    f"it cannot use {threads} (each would change the other's results)"
                )
            lease = ThreadLease(self, threads)
            self._leases.append(lease)
            torch.set_num_threads(self._count())
            return lease

    def release(self, lease: ThreadLease) -> None:
        with self._lock:
            if lease in self._leases:
                self._leases.remove(lease)

    def record(self, lease: ThreadLease, step_seconds: float) -> int:
        """The count `lease`'s run trains its next step with."""
        with self._lock:
            if self._leases == [lease] and not lease.threads:
                lease.tuner.record(step_seconds)
            return self._count()

    def _count(self) -> int:
        fixed = [lease.threads for lease in self._leases if lease.threads]
        if fixed:
            return fixed[0]
        return self._leases[0].tuner.current if len(self._leases) == 1 else 1


THREADS = ThreadPolicy()  # the one policy of this process
