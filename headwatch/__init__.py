"""Headwatch as a library, under a name of its own: `from headwatch import watch` is `engine.watch.watch` (the
names `engine` and `data` are Headwatch's too, and may be those of a user's own modules)."""

from engine.watch import Watcher, attention_modules, watch

__all__ = ["Watcher", "attention_modules", "watch"]
