"""Stage 0, shared by every stage: atomic writes, hashes, one deterministic zip, disk errors as user errors,
fault points. Stdlib only."""
