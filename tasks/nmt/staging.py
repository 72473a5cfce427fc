"""What the translation preparers share beyond the Moses steps: subword-nmt's joint BPE (learn_bpe.py -s N on the
concatenated training text, apply_bpe.py -c code), an order-keeping process pool for the per-line steps, line
files read and written on "\\n" only (as the shell pipelines do), and the output folder written as `OUT.partial`
and renamed when complete, so an interrupted run leaves nothing half-written."""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from subword_nmt.apply_bpe import BPE
from subword_nmt.learn_bpe import learn_bpe

Tick = Callable[[int], None]
LineJob = Callable[[str], str]
CHUNK_LINES = 2000  # tokenizer.perl -threads N hands each thread 2000 lines


def no_tick(n: int) -> None:
    """A progress callback that shows nothing."""


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def lines_of(stream: IO[str]) -> Iterator[str]:
    """A text stream opened with newline="\\n", line by line without the "\\n"."""
    for line in stream:
        yield line[:-1] if line.endswith("\n") else line


def text_lines(text: str) -> list[str]:
    return list(lines_of(io.StringIO(text, newline="\n")))


def read_text_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="replace", newline="\n") as f:
        yield from lines_of(f)


def write_lines(path: Path, lines: Iterable[str], tick: Tick = no_tick) -> int:
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
            n += 1
            tick(1)
    return n


@contextmanager
def atomic_folder(out_dir: Path) -> Iterator[Path]:
    """Yield OUT.partial (emptied first); on success it replaces OUT."""
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def learn_joint_bpe(lines: Iterable[str], merges: int) -> str:
    """learn_bpe.py -s MERGES < train.SRC-then-TGT; streams the lines, returns the codes file's text."""
    codes = io.StringIO()
    learn_bpe((f"{line}\n" for line in lines), codes, merges)
    return codes.getvalue()


@dataclass(unsafe_hash=True)
class ApplyBpe:
    """apply_bpe.py -c CODE as a picklable, hashable line -> line callable (the merge table is read on first use,
    in the process that runs it)."""

    codes: Path
    _bpe: BPE | None = field(default=None, init=False, repr=False, compare=False)

    def __call__(self, line: str) -> str:
        if self._bpe is None:
            with self.codes.open(encoding="utf-8") as f:
                self._bpe = BPE(f)
        return self._bpe.process_line(line)

    def __getstate__(self) -> dict:
        return {"codes": self.codes, "_bpe": None}


_built: dict[LineJob, LineJob] = {}


def _run_chunk(job: LineJob, chunk: list[str]) -> list[str]:
    """In a worker: the job as first built there (its tools kept between chunks), on one chunk."""
    job = _built.setdefault(job, job)
    return [job(line) for line in chunk]


def chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class LinePool:
    """`workers` processes for the per-line steps, started once per preparation; one worker runs in-process."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        context = multiprocessing.get_context("spawn")
        self.executor = ProcessPoolExecutor(workers, mp_context=context) if workers > 1 else None

    def __enter__(self) -> LinePool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)

    def map(self, job: LineJob, lines: Iterable[str], chunk: int = CHUNK_LINES) -> Iterator[str]:
        """job(line) for every line, in input order: chunks handed to the workers a bounded window ahead, so the
        input is streamed, never held. `job` must be picklable and hashable (built once per worker)."""
        if self.executor is None:
            yield from map(job, lines)
            return
        pending: deque[Future[list[str]]] = deque()
        for part in chunks(lines, chunk):
            pending.append(self.executor.submit(_run_chunk, job, part))
            if len(pending) > 2 * self.workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
