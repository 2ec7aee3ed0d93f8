"""Stage 6: every artifact measured in its real runtime (latency, memory, accuracy) and the result rows."""
