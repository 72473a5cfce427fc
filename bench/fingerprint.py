"""The semantic config of a run (what it computes, not where or how visibly) and its fingerprint.

Torch-free, so that readers of records (`bench check`, the report's grouping by config) use the same definition
as the runner's run_id.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Keys that change where or how visibly a run happens, not what it computes.
NON_SEMANTIC = {
    "task": ("data_dir", "target", "model_note", "cache_dir", "workers", "prefetch", "prepare_workers"),
    "trainer": ("device", "progress", "checkpoint", "eval_batch_size", "heartbeat_s", "lease_ttl_s"),
}
# Keys added after runs were recorded, left out of the run_id at the value that reproduces the old behaviour, so
# that upgrading does not rename (and rerun) finished runs. A key joins here when it is added with such a default.
NEUTRAL_DEFAULTS = {
    "trainer": {"test_on": "last", "conv_tf32": True, "switch_optimizer": None},
}


def semantic(resolved: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that defines the experiment: task, optimizer, budget, seed."""
    out = {key: resolved.get(key, {} if key != "seed" else None) for key in ("task", "optimizer", "trainer", "seed")}
    for section, keys in NON_SEMANTIC.items():
        out[section] = {k: v for k, v in (out[section] or {}).items() if k not in keys}
    for section, neutral in NEUTRAL_DEFAULTS.items():
        out[section] = {k: v for k, v in (out[section] or {}).items() if k not in neutral or v != neutral[k]}
    return out


def digest(doc: Any) -> str:
    """12 hex digits of the SHA-256 of `doc` as sorted JSON: equal documents, equal digests."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:12]


def flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (`trainer.schedule.name`); lists and scalars stay values."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def study_config(resolved: dict[str, Any]) -> dict[str, Any]:
    """The semantic config minus the seed, flattened: what every seed of one study cell shares."""
    return {k: v for k, v in flat(semantic(resolved)).items() if k != "seed"}


def fingerprint(resolved: dict[str, Any]) -> str:
    """The digest of `study_config`: two runs that differ only in their seed share it."""
    return digest(study_config(resolved))
