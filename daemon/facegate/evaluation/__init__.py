"""Accuracy evaluations on labelled data (internal pair lists, detection counts)."""
