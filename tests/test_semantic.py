"""bench.fingerprint.semantic is what both the run_id and report grouping hash: moving it out of bench.records
must not rename a single finished run."""

from __future__ import annotations

from bench.config import compose_config
from bench.records import run_id_of


def test_run_ids_of_the_demo_are_unchanged() -> None:
    # ids written before the semantic config left bench/records.py (experiment=demo, digits; seed 0 is falsy)
    demo = ["experiment=demo", "optimizer=adam"]
    assert run_id_of(compose_config([*demo, "seed=0"])) == "6dff18f81a50"
    assert run_id_of(compose_config([*demo, "seed=1"])) == "f54450ec2fef"
