"""SleepEdge sources (see README: not yet built)."""
