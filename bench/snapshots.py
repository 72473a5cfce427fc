"""Weights kept for the final test: the last N epoch ends, for fairseq-style checkpoint averaging (the authors'
NMT evaluation averages the last 5 IWSLT / 10 WMT epoch checkpoints before decoding the test set), or the epoch
with the best validation metric (`trainer.test_on: best`, the paper's LM protocol: "the perplexity on the test
set with the best validation model").

Snapshots are read with `weights_only=True`, like checkpoints: a file that asks the unpickler for more (a crafted
one in a shared study folder) or that is damaged is not used, nothing in it runs, and `test_model` says so."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.atomic import write_atomic
from bench.checkpoint import refusal

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


def read_weights(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A snapshot's weights, or None and why they are not used (refused or damaged). `best.pt` holds the weights
    under "state" beside its epoch; an epoch snapshot is the weights themselves."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        return None, f"{path.name} is refused: {refusal(exc)}; nothing in it was run"
    except Exception as exc:  # a truncated or corrupted archive
        return None, f"{path.name} is unreadable ({type(exc).__name__}: {str(exc).partition(chr(10))[0]})"
    weights = saved.get("state") if isinstance(saved, dict) and path.name == BEST else saved
    if not isinstance(weights, dict) or not all(torch.is_tensor(v) for v in weights.values()) or (
            path.name == BEST and type(saved.get("epoch")) is not int):
        return None, f"{path.name} is refused: it does not hold a model's weights"
    return saved, None


def load_best(run_dir: Path, best: dict[str, Any], name: str, model: nn.Module) -> str:
    """Load the weights of `best` (the history row of the best evaluation) into `model` and say which they are. A
    snapshot of another epoch (one a resume from an older checkpoint redid) is not the best epoch's: the final
    weights stay, and the record says so."""
    path = run_dir / SNAPSHOT_DIR / BEST
    if not path.is_file():
        return "the final weights (no best-epoch snapshot was kept)"
    saved, problem = read_weights(path)
    if saved is None:
        return f"the final weights ({problem})"
    if saved["epoch"] != best["epoch"]:
        return (f"the final weights (the snapshot kept is epoch {saved['epoch']}'s, not the best epoch "
                f"{best['epoch']}'s)")
    model.load_state_dict(saved["state"])
    return f"the weights at the end of epoch {best['epoch']}, the best valid {name} ({best['metrics'][name]:.6g})"


def clear_snapshots(run_dir: Path) -> None:
    shutil.rmtree(run_dir / SNAPSHOT_DIR, ignore_errors=True)


def average_snapshots(run_dir: Path, model: nn.Module) -> str:
    """Load the element-wise mean of the kept snapshots into `model` (floating tensors accumulated in fp64
    and cast back; integer buffers such as BatchNorm's counter taken from the newest) and say which. A snapshot
    that cannot be used is left out, and the answer names it."""
    states, epochs, problems = [], [], []
    for path in snapshot_paths(run_dir):
        state, problem = read_weights(path)
        if state is None:
            problems.append(problem)
        else:
            states.append(state)
            epochs.append(int(path.stem.split("_")[1]))
    if not states:
        return "the final weights (no usable epoch snapshots were kept" + "".join(f"; {p}" for p in problems) + ")"
    left_out = f" (left out: {'; '.join(problems)})" if problems else ""
    averaged = {}
    for key, newest in states[-1].items():
        if newest.is_floating_point():
            total = sum(s[key].double() for s in states)
            averaged[key] = (total / len(states)).to(newest.dtype)
        else:
            averaged[key] = newest
    model.load_state_dict(averaged)
    return f"average of the weights at the end of epochs {epochs}{left_out}"
