"""SleepEdge sinks (see README: not yet built)."""
