"""The course's experiments: sweeps of runs, statistics and verdicts, the peers at matched compute, the open
questions, sharpness, transfer, and the figures' style."""
