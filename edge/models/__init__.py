"""SleepEdge models (see README: not yet built)."""
