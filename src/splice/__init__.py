"""Splice: neural merge-conflict resolution and a model-merging engine."""

__version__ = "0.1.0"
