"""Offline jobs: fitting weights and calibration, learning from feedback, evaluation and metrics."""
