"""Ranking maths (features, scorers, calibration) and the versions of learned weights."""
