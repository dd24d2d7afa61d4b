"""Training: the run configuration, one cell recipe (one or many processes), the harness loop."""
