"""Stage 2: a class-folder dataset scanned and split, each photo decoded once per sweep, augmented views."""
