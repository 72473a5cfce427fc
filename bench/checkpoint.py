"""Checkpoints (every epoch, and mid-epoch on preemption): everything a resumed run needs to equal an
uninterrupted one, kept in two generations that each prove their integrity.

Each file is a header line `BENCHCKPT2 <sha256 of the payload>` followed by the torch.save payload, written
atomically. A save moves the newest checkpoint to `checkpoint.prev.pt` before putting the new one in place, so
a file damaged later (a truncated copy, a full disk, bit rot) costs at most one more epoch: the loader checks
the newest, falls back to the previous one, and says so.

The header proves integrity, not origin: anyone who can write to a study folder can write a matching one. So
the payload is plain data (bench/safe_state.py) loaded with `weights_only=True`, which builds tensors and
containers and never imports or calls what a file names. A file that asks for more (a crafted pickle) is
refused like a damaged one and nothing in it runs. Files of the older format (`BENCHCKPT1`, full pickle) are
refused the same way: reading them safely is not possible, so such a run starts over.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.atomic import STORAGE_ERRNOS, StorageError, write_atomic
from bench.safe_state import from_plain, to_plain

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_NAME = "checkpoint.prev.pt"
MAGIC = b"BENCHCKPT2 "
OLD_MAGIC = b"BENCHCKPT1 "
PAYLOAD_KEYS = ("model", "optimizer", "schedule", "state", "ranks")


class Refused(ValueError):
    """An intact checkpoint that is not loaded: the older format, or content a weights-only load refuses."""


def rng_state() -> dict[str, Any]:
    """Every global RNG stream a resumed run continues: Python's (a tuple of ints), NumPy's (a tuple around its
    MT19937 key array, which bench/safe_state.py stores as dtype + bytes), torch's CPU and CUDA generators
    (uint8 tensors)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def encode(payload: dict[str, Any]) -> bytes:
    """The file's bytes; TypeError naming any part of `payload` that a weights-only load could not rebuild."""
    buffer = io.BytesIO()
    torch.save(to_plain(payload, "checkpoint"), buffer)
    body = buffer.getvalue()
    return MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def refusal(exc: pickle.UnpicklingError) -> str:
    """torch's many-line weights-only error as one clause: what the file asked the unpickler for."""
    text = str(exc)
    named = re.search(r"GLOBAL (\S+)", text)
    if named:
        return f"it asks to load {named[1]}, which a weights-only load does not allow"
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    return f"a weights-only load rejects it ({detail[1] if detail else text.partition(chr(10))[0]})"


def decode(blob: bytes) -> dict[str, Any]:
    """The payload of a checkpoint file; Refused or ValueError saying what is wrong if it cannot be used."""
    header, _, body = blob.partition(b"\n")
    if header.startswith(OLD_MAGIC):
        raise Refused("it is from the older checkpoint format (BENCHCKPT1), which only a full pickle load reads, "
                      "so it is not loaded")
    if not header.startswith(MAGIC):
        raise ValueError("no checkpoint header (not written by this bench, or damaged at the start)")
    if hashlib.sha256(body).hexdigest().encode() != header[len(MAGIC):]:
        raise ValueError(f"checksum mismatch ({len(blob)} bytes; truncated or corrupted)")
    try:
        plain = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise Refused(f"{refusal(exc)}; nothing in it was run") from None
    try:
        payload = from_plain(plain)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    state = payload.get("state") if isinstance(payload, dict) else None
    if not isinstance(state, dict) or type(state.get("step")) is not int or any(k not in payload
                                                                                  for k in PAYLOAD_KEYS):
        raise Refused(f"it is not a run checkpoint (expected a dict with {', '.join(PAYLOAD_KEYS)})")
    return payload


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> None:
    """Write the new checkpoint, then keep the one it replaces as the previous generation."""
    blob = encode(payload)
    current, previous = run_dir / CHECKPOINT_NAME, run_dir / PREVIOUS_NAME
    staged = run_dir / ".checkpoint.next.pt"
    write_atomic(staged, lambda f: f.write(blob))
    try:
        if current.exists():
            os.replace(current, previous)
        os.replace(staged, current)
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise StorageError.of(exc, current) from None
        raise


@dataclass
class Loaded:
    """The checkpoint a run resumes from (None: start over), and one line per file that could not be used."""

    payload: dict[str, Any] | None
    source: str | None = None
    problems: list[str] = field(default_factory=list)


def load_checkpoint(run_dir: Path) -> Loaded:
    """The newest usable checkpoint, loaded on the CPU (RNG states must stay CPU byte tensors; model and
    optimizer state follow their parameters to the device when loaded into them). A staged file left by a
    save that was killed between its two renames is the newest generation."""
    loaded = Loaded(None)
    for name in (CHECKPOINT_NAME, ".checkpoint.next.pt", PREVIOUS_NAME):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            payload = decode(path.read_bytes())
        except Refused as exc:
            loaded.problems.append(f"{path} is refused: {exc}")
            continue
        except Exception as exc:  # any damage: a bad header, a checksum, a broken archive
            loaded.problems.append(f"{path} is unreadable ({exc})")
            continue
        if loaded.payload is None or payload["state"]["step"] > loaded.payload["state"]["step"]:
            loaded.payload, loaded.source = payload, name
    return loaded


def remove_checkpoints(run_dir: Path) -> None:
    for name in (CHECKPOINT_NAME, ".checkpoint.next.pt", PREVIOUS_NAME):
        (run_dir / name).unlink(missing_ok=True)
