"""Headwatch as a library, under a name of its own: `from headwatch import watch` is `engine.recording.watch.watch` (the
names `engine` and `data` are Headwatch's too, and may be those of a user's own modules). HeadwatchCallback, for
Hugging Face's Trainer, and HeadwatchLightningCallback, for PyTorch Lightning's, are imported when first asked for:
they need transformers or lightning, which the rest does not."""

from typing import Any

from engine.recording.attention_modules import attention_modules
from engine.recording.watch import HeadSlices, Watcher, register_attention, watch

__all__ = [
    "HeadSlices",
    "HeadwatchCallback",
    "HeadwatchLightningCallback",
    "Watcher",
    "attention_modules",
    "register_attention",
    "watch",
]


def __getattr__(name: str) -> Any:
    if name == "HeadwatchCallback":
        from engine.recording.hugging_face import HeadwatchCallback

        return HeadwatchCallback
    if name == "HeadwatchLightningCallback":
        from engine.recording.lightning_callback import HeadwatchLightningCallback

        return HeadwatchLightningCallback
    raise AttributeError(f"module 'headwatch' has no attribute {name!r}")
