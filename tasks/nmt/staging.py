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


@dataclass
class ApplyBpe:
    """apply_bpe.py -c CODE as a picklable line -> line callable (the merge table is parsed on first use)."""

    codes: str
    _bpe: BPE | None = field(default=None, init=False, repr=False)

    def __call__(self, line: str) -> str:
        if self._bpe is None:
            self._bpe = BPE(io.StringIO(self.codes))
        return self._bpe.process_line(line)

    def __getstate__(self) -> dict:
        return {"codes": self.codes, "_bpe": None}


_installed: list[LineJob] = []


def _install(job: LineJob) -> None:
    _installed[:] = [job]


def _run_installed(chunk: list[str]) -> list[str]:
    return [_installed[0](line) for line in chunk]


def chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def ordered_map(job: LineJob, lines: Iterable[str], workers: int, chunk: int = CHUNK_LINES) -> Iterator[str]:
    """job(line) for every line, in input order; with workers > 1 in that many processes, chunked, a bounded
    window ahead so the input is streamed, never held."""
    if workers <= 1:
        yield from map(job, lines)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_install, initargs=(job,)) as pool:
        pending: deque[Future[list[str]]] = deque()
        for part in chunks(lines, chunk):
            pending.append(pool.submit(_run_installed, part))
            if len(pending) > 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
