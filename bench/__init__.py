"""adahessian-bench: the harness (CLI, runner, records, reports)."""
