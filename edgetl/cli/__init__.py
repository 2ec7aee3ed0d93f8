"""Stage 9: the `edgetl` command line; argparse wiring only, each command builds the configs and calls a stage."""
