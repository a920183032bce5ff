"""SleepEdge firmware simulator: virtual devices, signal synthesis, replay, fault injection."""
