"""One intra-op torch thread for tests that train tiny models: on a shared 2-core machine two spinning threads made
such steps 10-20x slower. Restored afterwards, so other tests keep torch's default."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_intraop_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
