"""The stages of a run, one concern per module (see shared/exporter.py for the whole)."""
