"""Stage 8: the grid as one plan of units (train -> export -> bench) run by two executors: in-process and Ray."""
