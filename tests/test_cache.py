"""The one cache facility (engine/cache.py): a bound, least recently used first out, named keys, versions and ages,
weakly held keys, and threads sharing it."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable

import pytest

from engine.cache import Cache


class Made:
    def __init__(self, value: object) -> None:
        self.value = value


class Maker:
    """make() for a cache, counting what it made."""

    def __init__(self) -> None:
        self.made: list[object] = []

    def __call__(self, value: object) -> Callable[[], object]:
        def make() -> object:
            self.made.append(value)
            return Made(value)  # a new object each time it is made

        return make


def test_a_cache_keeps_at_most_its_bound() -> None:
    cache: Cache[object] = Cache("test", max_entries=2, key=("n",))
    maker = Maker()
    for n in range(5):
        cache.get(maker(n), n=n)
    assert len(cache) == 2
    cache.get(maker(4), n=4)
    cache.get(maker(0), n=0)
    assert maker.made == [0, 1, 2, 3, 4, 0]  # 4 was kept, 0 had gone


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: Cache[object] = Cache("test", max_entries=2, key=("n",))
    maker = Maker()
    first = cache.get(maker("a"), n="a")
    cache.get(maker("b"), n="b")
    assert cache.get(maker("a"), n="a") is first  # "a" used again: "b" is now the least recently used
    cache.get(maker("c"), n="c")
    assert cache.get(maker("a"), n="a") is first
    cache.get(maker("b"), n="b")
    assert maker.made == ["a", "b", "c", "b"]


def test_keys_are_named_and_a_key_of_other_names_is_refused_in_words() -> None:
    cache: Cache[object] = Cache("minimal pairs", max_entries=4, key=("vocabulary", "max_len"))
    maker = Maker()
    value = cache.get(maker(1), vocabulary=("a", "b"), max_len=40)
    assert cache.get(maker(2), max_len=40, vocabulary=("a", "b")) is value  # by name, in any order
    assert cache.get(maker(3), vocabulary=("a", "b"), max_len=41) is not value
    with pytest.raises(TypeError, match=r"minimal pairs cache is keyed by vocabulary, max_len, not by vocabulary\.$"):
        cache.get(maker(4), vocabulary=("a", "b"))
    with pytest.raises(TypeError, match="not by vocabulary, max_len, device"):
        cache.get(maker(5), vocabulary=("a", "b"), max_len=40, device="cpu")
    assert "minimal pairs" in repr(cache) and "keyed by vocabulary, max_len" in repr(cache)
    for wrong in (
        {"key": ()},
        {"key": ("version",)},
        {"key": ("n", "n")},
        {"key": ("n",), "weak": ("m",)},
        {"key": ("n",), "max_entries": 0},
    ):
        with pytest.raises(ValueError, match="The bad cache needs"):
            Cache("bad", **({"max_entries": 1} | wrong))


def test_a_newer_version_or_an_older_value_than_asked_for_is_made_again_in_place() -> None:
    cache: Cache[object] = Cache("test", max_entries=4, key=("run",))
    maker = Maker()
    old = cache.get(maker("v1"), version=1, run="r")
    assert cache.get(maker("v1 again"), version=1, run="r") is old
    new = cache.get(maker("v2"), version=2, run="r")
    assert new is not old and len(cache) == 1  # in place of the old one, never wanted again
    assert cache.get(maker("young"), version=2, max_age_s=60, run="r") is new
    time.sleep(0.02)
    assert cache.get(maker("old"), version=2, max_age_s=0.01, run="r") is not new
    assert maker.made == ["v1", "v2", "old"]


def test_a_weakly_held_key_object_is_not_kept_alive_and_its_entry_goes_with_it() -> None:
    class Model:
        pass

    cache: Cache[object] = Cache("layouts", max_entries=4, key=("model", "n"), weak=("model",))
    maker = Maker()
    one, two = Model(), Model()
    layout = cache.get(maker(1), model=one, n=0)
    assert cache.get(maker(2), model=one, n=0) is layout
    assert cache.get(maker(3), model=two, n=0) is not layout  # another model, by identity
    value_gone, model_gone = weakref.ref(layout), weakref.ref(one)
    del one, layout
    gc.collect()
    assert model_gone() is None and value_gone() is None and len(cache) == 1


def test_two_threads_making_the_same_key_at_once_are_both_given_the_one_kept_first() -> None:
    cache: Cache[object] = Cache("test", max_entries=4, key=("n",))
    both_making = threading.Barrier(2, timeout=5)  # made outside the lock: both are inside make() together

    def make() -> object:
        both_making.wait()
        return object()

    got = run_together(lambda: cache.get(make, n=1), lambda: cache.get(make, n=1))
    assert got[0] is got[1] and len(cache) == 1


def test_two_threads_evicting_at_once_each_get_their_own_and_the_bound_holds() -> None:
    cache: Cache[object] = Cache("test", max_entries=1, key=("n",))
    cache.get(object, n=0)
    both_making = threading.Barrier(2, timeout=5)

    def make(n: int) -> Callable[[], object]:
        def made() -> object:
            both_making.wait()
            return n

        return made

    assert run_together(lambda: cache.get(make(1), n=1), lambda: cache.get(make(2), n=2)) == [1, 2]
    assert len(cache) == 1


def test_an_entry_evicted_by_one_thread_while_another_marks_it_used_raises_in_neither() -> None:
    """Thread A has found its entry and is marking it used when thread B evicts it: only the lock stops that."""
    overtaken, b_done = threading.Event(), threading.Event()

    class Overtaking:
        """A key part; thread A is overtaken while hashing it the second time (to mark its entry used)."""

        def __init__(self) -> None:
            self.hashed_in_a = 0

        def __hash__(self) -> int:
            if threading.current_thread().name == "A":
                self.hashed_in_a += 1
                if self.hashed_in_a == 2:
                    overtaken.set()
                    b_done.wait(timeout=1)  # a lock held by A keeps B out: it waits for A instead
            return 0

    cache: Cache[object] = Cache("test", max_entries=1, key=("n",))
    key = Overtaking()
    kept = cache.get(object, n=key)
    got: dict[str, object] = {}

    def get(name: str, n: object) -> None:
        try:
            got[name] = cache.get(object, n=n)
        except Exception as error:
            got[name] = error
        if name == "B":
            b_done.set()

    a = threading.Thread(target=get, args=("A", key), name="A")
    b = threading.Thread(target=get, args=("B", 1), name="B")
    a.start()
    assert overtaken.wait(timeout=5)
    b.start()
    a.join(timeout=10)
    b.join(timeout=10)
    assert got["A"] is kept and not isinstance(got["B"], Exception) and len(cache) == 1


def run_together(*calls: Callable[[], object]) -> list[object]:
    """Each call in its own thread, started together; what each returned, or raised."""
    got: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            got[index] = calls[index]()
        except Exception as error:
            got[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return got
