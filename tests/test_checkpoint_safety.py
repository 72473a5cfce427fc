"""Nothing in a run folder runs code: a crafted checkpoint or snapshot (a valid header over a pickle whose loading
would call exec) is refused in one line, treated like a damaged file, and its payload never runs; checkpoints of
the older pickle format are refused the same way and the run starts over."""

from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bench import worker
from bench.checkpoint import CHECKPOINT_NAME, MAGIC, OLD_MAGIC, PREVIOUS_NAME, decode
from bench.config import compose_config
from bench.runner import Runner
from bench.snapshots import BEST, SNAPSHOT_DIR, average_snapshots, load_best, save_best, save_snapshot
from tests.runs import comparable, run

RUN = ("task=digits", "optimizer=adam", "trainer.epochs=3", "trainer.deterministic=true")


class Exploit:
    """What an attacker pickles: unpickling it calls exec, which writes `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def pickled(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def with_header(magic: bytes, body: bytes) -> bytes:
    """A header whose checksum matches the body, as anyone can compute."""
    return magic + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def crafted_checkpoint(marker: Path) -> bytes:
    """A checkpoint that would win as the newest (a huge step) and run exec when unpickled."""
    return with_header(MAGIC, pickled({"model": {}, "optimizer": {}, "schedule": {}, "state": {"step": 10**6},
                                       "ranks": [], "x": Exploit(marker)}))


def test_the_exploit_is_armed(tmp_path: Path) -> None:
    """The control: plain unpickling of the crafted body's pickle runs the payload (so its absence below means
    the payload was refused, not that it was inert)."""
    control = tmp_path / "control"
    archive = zipfile.ZipFile(io.BytesIO(crafted_checkpoint(control).partition(b"\n")[2]))
    pickle.loads(archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl"))))
    assert control.read_text() == "ran"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run(tmp_path_factory.mktemp("reference"), *RUN)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run killed after its epoch-2 checkpoint: checkpoint.pt (epoch 2) and checkpoint.prev.pt (epoch 1)."""
    runs = tmp_path_factory.mktemp("interrupted")
    original, ends = Runner.end_epoch, []

    def killed_after_two(self, *args, **kwargs):
        original(self, *args, **kwargs)
        ends.append(1)
        if len(ends) == 2:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Runner, "end_epoch", killed_after_two)
        with pytest.raises(KeyboardInterrupt):
            run(runs, *RUN)
    return runs


def copy_of(interrupted: Path, tmp_path: Path) -> tuple[Path, Path]:
    runs = tmp_path / "runs"
    shutil.copytree(interrupted, runs)
    return runs, next((runs / "default").iterdir())


def test_crafted_newest_checkpoint_is_refused_and_the_run_resumes_from_the_previous(
        interrupted: Path, reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs, folder = copy_of(interrupted, tmp_path)
    marker = tmp_path / "marker"
    (folder / CHECKPOINT_NAME).write_bytes(crafted_checkpoint(marker))
    resumed = run(runs, *RUN)
    assert not marker.exists()
    lines = [line for line in capsys.readouterr().err.splitlines() if CHECKPOINT_NAME in line]
    assert len(lines) == 1
    assert lines[0].startswith(f"{folder / CHECKPOINT_NAME} is refused: it asks to load exec")
    assert "nothing in it was run; resuming from checkpoint.prev.pt (step" in lines[0]
    assert resumed["resumed"] == 1 and "restarted" not in resumed
    assert comparable(resumed) == comparable(reference)


def test_with_every_checkpoint_crafted_the_run_starts_over_and_says_why(
        interrupted: Path, reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs, folder = copy_of(interrupted, tmp_path)
    marker = tmp_path / "marker"
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
        (folder / name).write_bytes(crafted_checkpoint(marker))
    resumed = run(runs, *RUN)
    assert not marker.exists()
    assert "no usable checkpoint is left, so the run starts over" in capsys.readouterr().err
    assert resumed["resumed"] == 0 and resumed["restarted"].count("is refused: it asks to load exec") == 2
    assert comparable(resumed) == comparable(reference)


def test_checkpoints_of_the_older_format_are_refused_and_the_run_starts_over(
        interrupted: Path, reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The files the previous release wrote for this run: `BENCHCKPT1` over torch.save of the raw payload
    (NumPy's RNG state as an ndarray), which only a full pickle load reads."""
    runs, folder = copy_of(interrupted, tmp_path)
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
        payload = decode((folder / name).read_bytes())
        (folder / name).write_bytes(with_header(OLD_MAGIC, pickled(payload)))
    resumed = run(runs, *RUN)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "older checkpoint format" in line]
    assert len(lines) == 2 and all("is refused: it is from the older checkpoint format (BENCHCKPT1)" in line
                                   for line in lines)
    assert "no usable checkpoint is left, so the run starts over" in lines[-1]
    assert resumed["resumed"] == 0 and "older checkpoint format" in resumed["restarted"]
    assert comparable(resumed) == comparable(reference)


def test_crafted_snapshots_are_refused_and_never_run(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 1)
    marker = tmp_path / "marker"
    save_best(tmp_path, 1, model)
    (tmp_path / SNAPSHOT_DIR / BEST).write_bytes(pickled({"epoch": 1, "state": Exploit(marker)}))
    answer = load_best(tmp_path, {"epoch": 1, "metrics": {"top1": 1.0}}, "top1", model)
    assert answer.startswith("the final weights (best.pt is refused: it asks to load exec")
    for epoch in (1, 2):
        save_snapshot(tmp_path, epoch, model, keep=2)
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    (tmp_path / SNAPSHOT_DIR / "epoch_00001.pt").write_bytes(pickled(Exploit(marker)))
    answer = average_snapshots(tmp_path, model)
    assert answer.startswith("average of the weights at the end of epochs [2] (left out: epoch_00001.pt is refused")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in kept.items())
    assert not marker.exists()


def test_a_worker_runs_only_the_config_its_launcher_wrote(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The launcher leaves the resolved config in the run folder for its workers; one changed in between (its
    `_target_` could name any callable) is refused in one line and nothing runs."""
    cfg = compose_config(["task=digits", f"paths.runs={tmp_path}", "trainer.epochs=1"])
    written = OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True)).encode()
    path = tmp_path / "config.yaml"
    path.write_bytes(written.replace(b"name: digits", b"name: digits\n  _target_: builtins.exec", 1))
    assert worker.main([str(path), hashlib.sha256(written).hexdigest()]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {path}: not the config the launcher wrote (SHA-256 mismatch; changed since), so it is "
                   "not run; rerun the same command"]
    assert not list(tmp_path.rglob("record.json"))
