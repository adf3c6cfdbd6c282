"""Local stand-ins and helpers for development, the demo and tests (never imported by shared/)."""
