"""Run folders: their layout and format, reading them as possibly hostile files (older formats included), writing
them atomically, how a run ended as facts and in words, listing and exporting them. May import engine.telemetry and
engine.model."""
