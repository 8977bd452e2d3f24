"""Run folders: their layout, reading them as possibly hostile files, writing them atomically, listing and exporting
them. May import engine.telemetry and engine.model."""
