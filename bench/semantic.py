"""What makes two runs the same experiment: the semantic part of a resolved config. Torch-free, so that
`bench.records` (the run_id) and `bench.recordset` (report grouping) share one definition."""

from __future__ import annotations

from typing import Any

# Keys that change where or how visibly a run happens, not what it computes.
NON_SEMANTIC = {
    "task": ("data_dir", "target", "model_note", "cache_dir", "workers", "prefetch", "prepare_workers"),
    "trainer": ("device", "progress", "checkpoint", "eval_batch_size", "heartbeat_s", "lease_ttl_s"),
}
# Keys added after runs were recorded, left out of the run_id at the value that reproduces the old behaviour, so
# that upgrading does not rename (and rerun) finished runs. A key joins here when it is added with such a default.
NEUTRAL_DEFAULTS = {
    "trainer": {"test_on": "last"},
}
SECTIONS = ("task", "optimizer", "trainer", "seed")


def semantic_of(resolved: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that defines the experiment: task, optimizer, budget, seed."""
    semantic = {key: resolved.get(key, {} if key != "seed" else None) for key in SECTIONS}
    for section, keys in NON_SEMANTIC.items():
        semantic[section] = {k: v for k, v in (semantic[section] or {}).items() if k not in keys}
    for section, neutral in NEUTRAL_DEFAULTS.items():
        semantic[section] = {k: v for k, v in (semantic[section] or {}).items() if k not in neutral or v != neutral[k]}
    return semantic
