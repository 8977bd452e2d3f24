"""Headwatch as a library, under a name of its own: `from headwatch import watch` is `engine.watch.watch` (the
names `engine` and `data` are Headwatch's too, and may be those of a user's own modules)."""

from engine.watch import HeadSlices, Watcher, attention_modules, register_attention, watch

__all__ = ["HeadSlices", "Watcher", "attention_modules", "register_attention", "watch"]
