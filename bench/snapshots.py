"""Weights kept for the final test: the last N epoch ends, for fairseq-style checkpoint averaging (the authors'
NMT evaluation averages the last 5 IWSLT / 10 WMT epoch checkpoints before decoding the test set), or the epoch
with the best validation metric (`trainer.test_on: best`, the paper's LM protocol: "the perplexity on the test
set with the best validation model")."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.atomic import write_atomic

SNAPSHOT_DIR = "snapshots"
BEST = "best.pt"
TEST_ON = ("last", "best")


def snapshot_paths(run_dir: Path) -> list[Path]:
    return sorted((run_dir / SNAPSHOT_DIR).glob("epoch_*.pt"))


def save_snapshot(run_dir: Path, epoch: int, model: nn.Module, keep: int) -> None:
    """Write this epoch's weights atomically and keep only the newest `keep` snapshots."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_atomic(run_dir / SNAPSHOT_DIR / f"epoch_{epoch:05d}.pt", lambda f: torch.save(state, f))
    for old in snapshot_paths(run_dir)[:-keep]:
        old.unlink(missing_ok=True)


def save_best(run_dir: Path, epoch: int, model: nn.Module) -> None:
    """Keep this epoch's weights, tagged with the epoch, as the best ones (the caller knows it is the best so far)."""
    saved = {"epoch": epoch, "state": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    write_atomic(run_dir / SNAPSHOT_DIR / BEST, lambda f: torch.save(saved, f))


def load_best(run_dir: Path, best: dict[str, Any], name: str, model: nn.Module) -> str:
    """Load the weights of `best` (the history row of the best evaluation) into `model` and say which they are. A
    snapshot of another epoch (one a resume from an older checkpoint redid) is not the best epoch's: the final
    weights stay, and the record says so."""
    path = run_dir / SNAPSHOT_DIR / BEST
    if not path.is_file():
        return "the final weights (no best-epoch snapshot was kept)"
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved["epoch"] != best["epoch"]:
        return (f"the final weights (the snapshot kept is epoch {saved['epoch']}'s, not the best epoch "
                f"{best['epoch']}'s)")
    model.load_state_dict(saved["state"])
    return f"the weights at the end of epoch {best['epoch']}, the best valid {name} ({best['metrics'][name]:.6g})"


def clear_snapshots(run_dir: Path) -> None:
    shutil.rmtree(run_dir / SNAPSHOT_DIR, ignore_errors=True)


def average_snapshots(run_dir: Path, model: nn.Module) -> str:
    """Load the element-wise mean of the kept snapshots into `model` (floating tensors accumulated in fp64
    and cast back; integer buffers such as BatchNorm's counter taken from the newest) and say which."""
    paths = snapshot_paths(run_dir)
    if not paths:
        return "the final weights (no epoch snapshots were kept)"
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
    averaged = {}
    for key, newest in states[-1].items():
        if newest.is_floating_point():
            total = sum(s[key].double() for s in states)
            averaged[key] = (total / len(states)).to(newest.dtype)
        else:
            averaged[key] = newest
    model.load_state_dict(averaged)
    epochs = [int(p.stem.split("_")[1]) for p in paths]
    return f"average of the weights at the end of epochs {epochs}"
