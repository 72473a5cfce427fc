"""Faults users meet on shared clusters: concurrent launches, kills at any point, damaged files, full or
read-only disks. Each must lose at most the last epoch, run nothing twice, and say what happened in one line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME, decode
from tests.conftest import REPO, bench
from tests.runs import comparable, run

RUN = ("task=digits", "optimizer=adam", "trainer.epochs=2", "trainer.deterministic=true", "trainer.progress=false")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted run every faulty one must end up equal to."""
    return run(tmp_path_factory.mktemp("reference"), *RUN)


def run_dir(runs: Path, record: dict) -> Path:
    return runs / "default" / record["run_id"]


def metrics_rows(folder: Path) -> list[dict]:
    """metrics.jsonl without the clock."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


def crash(runs: Path, kind: str, n: int, *overrides: str) -> int:
    """Run until the n-th `kind` event, then SIGKILL (tests/crash_driver.py)."""
    proc = subprocess.run([sys.executable, "-m", "tests.crash_driver", kind, str(n), *RUN, *overrides,
                           f"paths.runs={runs}"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    return proc.returncode


def launch_sweep(runs: Path, copies: int) -> list[subprocess.CompletedProcess]:
    """`copies` identical sweeps started at the same moment into one study."""
    args = [sys.executable, "-m", "bench", "run", "-m", "task=digits", "optimizer=sgd,adam", "seed=0",
            "trainer.epochs=2", "trainer.deterministic=true", "trainer.progress=false", f"paths.runs={runs}"]
    procs = [subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(copies)]
    return [subprocess.CompletedProcess(args, p.wait(timeout=600), p.stdout.read(), "") for p in procs]


@pytest.mark.parametrize("copies", [2, 4])
def test_concurrent_launches_run_every_run_exactly_once(tmp_path: Path, copies: int) -> None:
    single = tmp_path / "single"
    expected = {r["run_id"]: r for r in (run(single, *RUN[:1], f"optimizer={o}", *RUN[2:]) for o in ("sgd", "adam"))}
    shared = tmp_path / "shared"
    outputs = launch_sweep(shared, copies)
    assert all(p.returncode == 0 for p in outputs), [p.stdout for p in outputs]
    log = "".join(p.stdout for p in outputs)
    for run_id, reference_record in expected.items():
        folder = shared / "default" / run_id
        record = json.loads((folder / "record.json").read_text())
        assert comparable(record) == comparable(reference_record)
        assert record["resumed"] == 0  # trained from scratch by one process, never taken over
        trained = log.count(f"completed: top1 {record['metric']['final']:.2f} -> {folder}")
        assert trained == 1, log
        assert metrics_rows(folder) == metrics_rows(single / "default" / run_id)
        assert not (folder / "owner.json").exists()
    assert log.count("skip digits/") == (copies - 1) * len(expected), log


# Where a kill lands: inside each atomic write, before and after each rename that publishes a file, inside a
# metrics line, and after each checkpoint. A 2-epoch run has 8 atomic writes and 11 renames.
QUICK_POINTS = [("write", 4), ("replace", 5), ("replaced", 6), ("append", 1), ("checkpointed", 1)]
ALL_POINTS = ([("write", n) for n in range(1, 9)] + [("replace", n) for n in range(1, 12)]
              + [("replaced", n) for n in range(1, 12)] + [("append", n) for n in (1, 2)]
              + [("checkpointed", n) for n in (1, 2)])


def kill_and_resume(tmp_path: Path, reference: dict, kind: str, n: int) -> None:
    runs = tmp_path / f"{kind}{n}"
    code = crash(runs, kind, n)
    assert code == -9, f"{kind} {n}: the kill point was not reached (exit {code})"
    resumed = run(runs, *RUN)
    assert comparable(resumed) == comparable(reference), (kind, n)
    folder = run_dir(runs, resumed)
    assert metrics_rows(folder) == [{k: v for k, v in row.items() if k != "wall_s"} for row in reference["history"]]
    assert not list(folder.glob(".*.tmp"))  # what a killed writer left was cleaned up, never read


@pytest.mark.parametrize(("kind", "n"), QUICK_POINTS)
def test_sigkill_at_a_point_then_rerun_equals_the_uninterrupted_run(tmp_path: Path, reference: dict, kind: str,
                                                                     n: int) -> None:
    kill_and_resume(tmp_path, reference, kind, n)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "n"), ALL_POINTS)
def test_sigkill_at_every_point_then_rerun_equals_the_uninterrupted_run(tmp_path: Path, reference: dict, kind: str,
                                                                        n: int) -> None:
    kill_and_resume(tmp_path, reference, kind, n)


def interrupted_after_two_checkpoints(tmp_path: Path) -> Path:
    """A 3-epoch run killed right after its second checkpoint: checkpoint.pt (epoch 2) and .prev (epoch 1)."""
    runs = tmp_path / "runs"
    assert crash(runs, "checkpointed", 2, "trainer.epochs=3") == -9
    return runs


def three_epoch_reference(tmp_path: Path) -> dict:
    return run(tmp_path / "reference3", *RUN, "trainer.epochs=3")


def test_damaged_newest_checkpoint_resumes_from_the_previous_one(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    runs = interrupted_after_two_checkpoints(tmp_path)
    folder = next((runs / "default").iterdir())
    newest = folder / CHECKPOINT_NAME
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])  # a copy cut short
    resumed = run(runs, *RUN, "trainer.epochs=3")
    lines = [line for line in capsys.readouterr().err.splitlines() if "unreadable" in line]
    assert len(lines) == 1 and "checksum mismatch" in lines[0] and "resuming from checkpoint.prev.pt (step" in lines[0]
    assert comparable(resumed) == comparable(three_epoch_reference(tmp_path))
    assert decode(newest.read_bytes())["state"]["step"] == resumed["cost"]["steps"]


def test_no_usable_checkpoint_starts_over_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = interrupted_after_two_checkpoints(tmp_path)
    folder = next((runs / "default").iterdir())
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
        blob = bytearray((folder / name).read_bytes())
        blob[len(blob) // 2] ^= 0xFF  # one flipped bit in the middle
        (folder / name).write_bytes(bytes(blob))
    resumed = run(runs, *RUN, "trainer.epochs=3")
    assert "no usable checkpoint is left, so the run starts over" in capsys.readouterr().err
    assert resumed["resumed"] == 0 and "checksum mismatch" in resumed["restarted"]
    assert comparable(resumed) == comparable(three_epoch_reference(tmp_path))


def test_damaged_metrics_file_is_rebuilt_on_resume(tmp_path: Path, reference: dict) -> None:
    runs = tmp_path / "runs"
    assert crash(runs, "checkpointed", 1) == -9
    folder = next((runs / "default").iterdir())
    (folder / "metrics.jsonl").write_text('{"step": 22, "epo')
    resumed = run(runs, *RUN)
    assert comparable(resumed) == comparable(reference)
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


def test_damaged_record_is_skipped_by_report_failed_by_check_and_rebuilt_by_a_rerun(tmp_path: Path,
                                                                                     reference: dict) -> None:
    runs = tmp_path / "runs"
    run(runs, *RUN)
    other = run(runs, *RUN[:1], "optimizer=sgd", *RUN[2:])
    path = run_dir(runs, other) / "record.json"
    path.write_text(path.read_text()[:100])
    report = bench("report", str(runs / "default"), "--format", "csv")
    assert report.returncode == 0
    warnings = [line for line in report.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: skipped {path}: unreadable run record")
    assert "1 unreadable record(s) skipped" in report.stdout and ",adam," in report.stdout
    run(runs, *RUN, "seed=1")  # a baseline entry needs two seeds (their noise sets its tolerance)
    baseline = tmp_path / "baseline.yaml"
    assert bench("check", str(runs / "default"), "--write-baseline", str(baseline)).returncode == 0
    check = bench("check", str(runs / "default"), "--baseline", str(baseline))
    assert check.returncode == 1 and "unreadable record" in check.stdout and "FAIL" in check.stdout
    rebuilt = run(runs, *RUN[:1], "optimizer=sgd", *RUN[2:])
    assert rebuilt["status"] == "completed" and comparable(rebuilt)["history"] == comparable(other)["history"]


def test_status_lists_every_state(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run(runs, *RUN)
    assert crash(runs, "checkpointed", 1, "optimizer=sgd") == -9
    damaged = run(runs, *RUN, "seed=3")
    (run_dir(runs, damaged) / "record.json").write_text("{")
    (run_dir(runs, damaged) / CHECKPOINT_NAME).unlink()
    (run_dir(runs, damaged) / PREVIOUS_NAME).unlink(missing_ok=True)
    proc = bench("status", str(runs / "default"), "task=digits", "optimizer=adam,sgd,adagrad", "seed=0",
                 "trainer.epochs=2", "trainer.deterministic=true")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any("digits/adam/seed0" in line and "completed" in line for line in lines)
    assert any("digits/sgd/seed0" in line and "interrupted" in line and "resumable" in line for line in lines)
    assert any("unreadable" in line for line in lines)
    assert any("digits/adagrad/seed0" in line and "not started" in line for line in lines)
    assert lines[-1] == "1 interrupted, 1 unreadable, 1 not started, 1 completed"


def test_a_live_owner_is_reported_running_and_a_second_launch_skips(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    args = [sys.executable, "-m", "bench", "run", *RUN, "trainer.epochs=40", f"paths.runs={runs}"]
    owner = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lease = None
        while lease is None and owner.poll() is None:
            lease = next((runs / "default").glob("*/owner.json"), None) if (runs / "default").exists() else None
        assert lease is not None
        second = bench("run", *RUN, "trainer.epochs=40", f"paths.runs={runs}")
        assert second.returncode == 0
        assert f"is in progress elsewhere (host {os.uname().nodename} pid {owner.pid}, step" in second.stderr
        status = bench("status", str(runs / "default"))
        assert f"running      host {os.uname().nodename} pid {owner.pid}" in status.stdout
    finally:
        owner.kill()
        owner.wait()


def tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_full_disk_ends_in_one_line_and_keeps_the_previous_files(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not tmpfs(disk, "900k"):  # room for one checkpoint (~480 kB), not for a second beside it
        pytest.skip("cannot mount a tmpfs here (needs root); test_storage_errors_from_the_lowest_write covers it")
    try:
        proc = bench("run", *RUN, f"paths.runs={disk}")
        assert proc.returncode == 1, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "the disk is full" in errors[0] and str(disk / "default") in errors[0]
        assert "Traceback" not in proc.stderr
        folder = next((disk / "default").glob("*/record.json")).parent
        assert decode((folder / CHECKPOINT_NAME).read_bytes())["state"]["step"] > 0
        record = json.loads((folder / "record.json").read_text())
        assert record["status"] == "failed" and "the disk is full" in record["error"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_read_only_run_folder_ends_in_one_line(tmp_path: Path) -> None:
    disk = tmp_path / "ro"
    if not tmpfs(disk, "4m"):
        pytest.skip("cannot mount a tmpfs here (needs root); test_storage_errors_from_the_lowest_write covers it")
    folder = None
    try:
        first = bench("run", *RUN, "trainer.epochs=1", f"paths.runs={disk}")
        assert first.returncode == 0, first.stderr
        folder = next((disk / "default").glob("*/record.json")).parent
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        for args in (["--bind", str(folder), str(folder)], ["-o", "remount,ro,bind", str(folder)]):
            assert subprocess.run(["mount", *args]).returncode == 0
        proc = bench("run", *RUN, "trainer.epochs=1", "force=true", f"paths.runs={disk}")
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert lines[0] == (f"error: cannot write lock in {folder}: the file system is read-only; the previous "
                            "record and checkpoint there are intact. Free space or fix the folder, then rerun the "
                            "same command to resume")
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
        assert subprocess.run(["mount", "-o", "remount,ro", str(disk)]).returncode == 0
        whole = bench("run", *RUN, "trainer.epochs=1", "seed=5", f"paths.runs={disk}")
        assert whole.returncode == 1
        assert whole.stderr.strip() == (f"error: cannot write in {disk / 'default'}: the file system is read-only; "
                                        "pick a writable paths.runs or fix the folder")
    finally:
        if folder is not None:
            subprocess.run(["umount", str(folder)], check=False, capture_output=True)
        subprocess.run(["umount", str(disk)], check=False)


def test_storage_errors_from_the_lowest_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    """Without a tmpfs: the fsync of the second checkpoint raises ENOSPC, as a full disk would."""
    from bench import atomic
    from bench.config import compose_config
    from bench.launch import run_guarded

    real_fsync, checkpoint_syncs = os.fsync, []

    def fsync(fd: int) -> None:
        if "checkpoint" in os.readlink(f"/proc/self/fd/{fd}"):
            checkpoint_syncs.append(fd)
            if len(checkpoint_syncs) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    with pytest.raises(SystemExit) as stopped:
        run_guarded(compose_config([*RUN, f"paths.runs={tmp_path}"]), in_sweep=False)
    assert stopped.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot write .checkpoint.next.pt" in errors[0] and "the disk is full" in errors[0]
    folder = next((tmp_path / "default").glob("*/record.json")).parent
    assert decode((folder / CHECKPOINT_NAME).read_bytes())["state"]["step"] == 22  # epoch 1's, intact
    record = json.loads((folder / "record.json").read_text())  # the record could still be written: it says why
    assert record["status"] == "failed" and "the disk is full" in record["error"]
    assert not list(folder.glob(".*.tmp"))
