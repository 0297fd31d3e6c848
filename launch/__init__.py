"""absl-flag entry points: ``python -m launch.score``, ``python -m launch.correlate``, ..."""
