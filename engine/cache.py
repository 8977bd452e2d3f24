"""Results worth making once, kept in one kind of cache: each has a name, a key of named fields and a bound (the least
recently used entry goes first), and threads may share it. It imports nothing of Headwatch, so every layer may use it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

V = TypeVar("V")
_OPTIONS = ("version", "max_age_s")  # get's own arguments, so no key field may be called so


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    version: object
    made_at: float  # time.monotonic()
    guards: tuple[weakref.ref, ...]  # their callbacks forget the entry when a weakly held key object goes


class Cache(Generic[V]):
    """Values made by `make` for a key of named fields, at most `max_entries` of them kept for the next caller.

    A value is made outside the lock, so two threads missing the same key at once both make it, and both are given
    the one kept first. Every value kept here is a function of its key and version, so making it twice costs only
    time; making it under the lock would hold each thread up behind any other key's build (one viewer's saved model
    loading behind another's) and would deadlock a `make` that uses the same cache.

    Key fields named in `weak` hold their object by weak reference, compared as the object compares (a model: by
    identity): its entries go when it does, so a cache keyed by a model never keeps the model, or what the value
    shares with it (its parameters), alive.
    """

    def __init__(self, name: str, max_entries: int, key: tuple[str, ...], weak: tuple[str, ...] = ()) -> None:
        clashes = [field for field in key if field in _OPTIONS] + [field for field in weak if field not in key]
        if max_entries < 1 or not key or len(set(key)) != len(key) or clashes:
            raise ValueError(
                f"The {name} cache needs at least one entry and distinct key fields, none called "
                f"{' or '.join(_OPTIONS)}, its weak ones among them: got {max_entries}, {key}, {weak}."
            )
        self.name, self.max_entries, self.key, self.weak = name, max_entries, key, weak
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, _Entry[V]] = OrderedDict()
        self._dead: list[tuple] = []  # keys whose weakly held object went while the lock was held

    def get(
        self, make: Callable[[], V], /, *, version: object = None, max_age_s: float | None = None, **key: Hashable
    ) -> V:
        """The value kept under `key` if it was made for this `version` (and less than `max_age_s` ago); otherwise
        `make()`'s, kept in its place: a key's older versions are never asked for again."""
        stored = self._stored_key(key)
        with self._lock:
            self._forget_dead()
            entry = self._fresh(stored, version, max_age_s)
        if entry is not None:
            return entry.value
        value = make()
        with self._lock:
            entry = self._fresh(stored, version, max_age_s)  # another thread's, made meanwhile
            if entry is None:
                entry = _Entry(value, version, time.monotonic(), self._guards(key, stored))
                self._entries[stored] = entry
                self._entries.move_to_end(stored)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return entry.value

    def __len__(self) -> int:
        with self._lock:
            self._forget_dead()
            return len(self._entries)

    def __repr__(self) -> str:
        return f"Cache({self.name!r}: {len(self)} of {self.max_entries} entries, keyed by {', '.join(self.key)})"

    def _stored_key(self, key: dict[str, Hashable]) -> tuple:
        if key.keys() != set(self.key):
            raise TypeError(
                f"The {self.name} cache is keyed by {', '.join(self.key)}, not by {', '.join(key) or 'nothing'}."
            )
        return tuple(weakref.ref(key[field]) if field in self.weak else key[field] for field in self.key)

    def _fresh(self, stored: tuple, version: object, max_age_s: float | None) -> _Entry[V] | None:
        """The entry under `stored`, now the most recently used, if it is of `version` and young enough."""
        entry = self._entries.get(stored)
        if (
            entry is None
            or entry.version != version
            or (max_age_s is not None and time.monotonic() - entry.made_at >= max_age_s)
        ):
            return None
        self._entries.move_to_end(stored)
        return entry

    def _guards(self, key: dict[str, Hashable], stored: tuple) -> tuple[weakref.ref, ...]:
        return tuple(weakref.ref(key[field], partial(self._went, stored)) for field in self.weak)

    def _went(self, stored: tuple, _: weakref.ref) -> None:
        """A weakly held key object went. This runs wherever it went, perhaps inside this cache with the lock held (a
        collection during a dict operation), so the entry goes now if the lock is free, else at the next call."""
        self._dead.append(stored)
        if self._lock.acquire(blocking=False):
            try:
                self._forget_dead()
            finally:
                self._lock.release()

    def _forget_dead(self) -> None:
        while self._dead:
            self._entries.pop(self._dead.pop(), None)
