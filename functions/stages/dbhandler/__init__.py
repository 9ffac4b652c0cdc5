"""Layers: see docs/architecture.md."""
