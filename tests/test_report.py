"""bench report on hand-made records: the numbers, the paper layouts, the output formats and the plots."""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import t as t_dist
from scipy.stats import ttest_rel

from bench import paper, plots, report, stats
from bench.errors import UsageError
from bench.recordset import load
from tests.record_factory import demo_study, write_record


def _summary(root: Path) -> pd.DataFrame:
    rs = load(root)
    return stats.summarize(rs.runs, stats.time_to_target(rs.runs, rs.history)).set_index(["task", "label"])


def _report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    return report.run(parser.parse_args(argv))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return demo_study(tmp_path / "runs").parent


def _cifar(root: Path) -> None:
    """Two seeds of SGD, Adam and AdaHessian (every 1 and 2 steps) on ResNet20."""
    for seed, (sgd, adam, ada, ada2) in enumerate([(92.0, 90.0, 92.0, 92.3), (92.2, 90.6, 92.4, 92.5)]):
        write_record(root, study="c10", task="cifar10_resnet20", optimizer="sgd", seed=seed, curve=[85, sgd],
                     s_per_step=0.01)
        write_record(root, study="c10", task="cifar10_resnet20", optimizer="adam", seed=seed, curve=[85, adam],
                     s_per_step=0.0125)
        write_record(root, study="c10", task="cifar10_resnet20", optimizer="adahessian", seed=seed,
                     curve=[85, ada], s_per_step=0.03, hvp_count=20)
        write_record(root, study="c10", task="cifar10_resnet20", optimizer="adahessian", update_each=2,
                     seed=seed, curve=[85, ada2], s_per_step=0.02, hvp_count=10)


def test_summary_counts_means_and_failures(runs: Path) -> None:
    s = _summary(runs)
    adam, ada, sgd = s.loc[("digits", "adam")], s.loc[("digits", "adahessian")], s.loc[("digits", "sgd")]
    assert (adam["n_done"], adam["mean"], adam["std"]) == (3, 92.0, 2.0)
    assert ada["n_done"] == 3 and ada["mean"] == pytest.approx(280 / 3)
    assert ada["std"] == pytest.approx(math.sqrt(13 / 3))
    assert (ada["n_diverged"], ada["n_failed"], ada["s_per_step"], ada["hvp_count"]) == (1, 0, 0.03, 30)
    assert (sgd["n_done"], sgd["n_failed"], sgd["n_diverged"]) == (0, 1, 0) and math.isnan(sgd["mean"])


def test_time_to_target_respects_mode_and_missing_target(tmp_path: Path) -> None:
    write_record(tmp_path, optimizer="adam", seed=0, curve=[80, 93, 94], target=92.0)
    write_record(tmp_path, optimizer="adam", seed=1, curve=[80, 85, 90], target=92.0)
    write_record(tmp_path, task="ptb", optimizer="adamw", curve=[100, 60, 40], metric="ppl", mode="min",
                 target=50.0, s_per_step=0.5)
    write_record(tmp_path, task="notarget", curve=[1, 2, 3])
    rs = load(tmp_path)
    ttt = rs.runs.join(stats.time_to_target(rs.runs, rs.history)).set_index(["task", "seed"])
    assert tuple(ttt.loc[("digits", 0), ["steps_to_target", "s_to_target"]]) == (20, 0.2)
    assert ttt.loc[("digits", 1), ["steps_to_target", "s_to_target"]].isna().all()
    assert tuple(ttt.loc[("ptb", 0), ["steps_to_target", "s_to_target"]]) == (30, 15.0)
    assert ttt.loc[("notarget", 0), ["steps_to_target", "s_to_target"]].isna().all()
    s = stats.summarize(rs.runs, stats.time_to_target(rs.runs, rs.history)).set_index("task")
    # 1 of 2 seeds reached: not a strict majority, so the cell does not reach (a miss counts as never)
    assert (s.loc["digits", "n_reached"], s.loc["digits", "steps_to_target"]) == (1, math.inf)
    assert s.loc["ptb", "steps_to_target"] == 30
    assert not s.loc["notarget", "has_target"]


def test_paired_t_interval_on_the_seeds_both_completed(runs: Path) -> None:
    write_record(runs, optimizer="adam", seed=7, curve=[99.0], epochs=3)  # no adahessian partner: left out
    rs = load(runs)
    c = stats.compare_seeds(stats.per_seed(rs.runs, "digits", "adahessian"), stats.per_seed(rs.runs, "digits", "adam"),
                            ("adahessian", "adam"))
    # differences 1, 2, 1: mean 4/3, sd 1/sqrt(3); Student t with 2 df
    half = t_dist.ppf(0.975, 2) * (1 / math.sqrt(3)) / math.sqrt(3)
    assert (c.method, c.n, c.a_only, c.b_only) == ("paired t", "3", (), (7,))
    assert (c.mean, c.lo, c.hi) == pytest.approx((4 / 3, 4 / 3 - half, 4 / 3 + half))
    assert c.p == pytest.approx(ttest_rel([91, 94, 95], [90, 92, 94]).pvalue)
    none = stats.compare_seeds(stats.per_seed(rs.runs, "digits", "adam"), stats.per_seed(rs.runs, "digits", "sgd"))
    assert none.method == "" and math.isnan(none.p)


def test_cifar_layout_beside_paper_with_deltas(tmp_path: Path) -> None:
    _cifar(tmp_path)
    cmp = paper.compare(paper.LAYOUTS["cifar10"], _summary(tmp_path).reset_index(), paper.load_reference())
    cmp = cmp.set_index(["optimizer", "task"])
    assert list(cmp.index.get_level_values(0).unique()) == ["sgd", "adam", "adamw", "adahessian", "adahessian@2"]
    ada = cmp.loc[("adahessian", "cifar10_resnet20")]
    assert ada["n"] == 2 and ada["mean"] == pytest.approx(92.2) and ada["paper"] == 92.13
    assert ada["diff"] == pytest.approx(0.07) and ada["delta"] == pytest.approx(1.9)
    assert ada["paper_delta"] == pytest.approx(1.80)
    empty = cmp.loc[("adahessian", "cifar10_resnet32")]  # shown, not omitted
    assert empty["n"] == 0 and math.isnan(empty["mean"]) and empty["paper"] == 93.08
    section = report.layout_section(paper.LAYOUTS["cifar10"], _summary(tmp_path).reset_index(),
                                    paper.load_reference())
    row = next(r for r in section.rows if r[0] == "adahessian")
    assert row[1:] == ["92.20 ± 0.28 (n=2); paper 92.13; diff +0.07", "+1.90; paper +1.80", "–; paper 93.08",
                       "–; paper +1.45"]


def test_glue_average_over_the_tasks_present(tmp_path: Path) -> None:
    for i, task in enumerate(paper.GLUE_TASKS):
        write_record(tmp_path, task=task, optimizer="adahessian", curve=[80.0 + i], metric="glue")
        if i < 7:
            write_record(tmp_path, task=task, optimizer="adamw", curve=[80.0], metric="glue")
    cmp = paper.compare(paper.LAYOUTS["glue"], _summary(tmp_path).reset_index(), paper.load_reference())
    cmp = cmp.set_index(["optimizer", "task"])
    assert cmp.loc[("adahessian", "glue_avg"), "mean"] == pytest.approx(83.5)
    assert cmp.loc[("adahessian", "glue_avg"), "paper"] == 87.32  # all ran: the paper's own average
    assert cmp.loc[("adamw", "glue_avg"), "mean"] == pytest.approx(80.0)  # the 7 of 8 it ran
    assert cmp.loc[("adamw", "glue_avg"), "paper"] == 86.91  # every column ran for some optimizer
    assert cmp.loc[("adamw_squeezebert_paper", "glue_avg"), "paper"] == 86.01


def test_delayed_cost_table(tmp_path: Path) -> None:
    _cifar(tmp_path)
    d = paper.delayed(_summary(tmp_path).reset_index(), paper.load_reference()).set_index(["every", "task"])
    assert list(d.index.get_level_values(0).unique()) == [1, 2, 3, 4, 5]
    two = d.loc[(2, "cifar10_resnet20")]
    assert (two["n"], two["x_sgd"], two["x_adam"], two["hvp_count"]) == (2, pytest.approx(2.0), pytest.approx(1.6), 10)
    assert (two["paper_x_sgd"], two["paper_x_adam"], two["paper"]) == (1.71, 1.64, 92.40)
    assert d.loc[(1, "cifar10_resnet20"), "x_sgd"] == pytest.approx(3.0)
    assert d.loc[(5, "cifar10_resnet32"), "n"] == 0 and d.loc[(5, "cifar10_resnet32"), "paper_x_adam"] == 1.38


def test_default_report_shows_failures_and_paired(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _report([str(runs)]) == 0
    out = capsys.readouterr().out
    assert "| digits | adahessian | top1 % ↑ |    3 | 93.33 ± 2.08 |" in out
    assert "diverged: digits adahessian seed 3: loss is nan at step 25" in out
    assert "failed: digits sgd seed 0: CUDA out of memory" in out
    assert re.search(r"\| digits +\| adahessian − adam +\| paired t \| 3 \| +\+1\.33 \| \[-0\.10, \+2\.77\] \| "
                     r"0\.057 \| +0\.057 \| not distinguishable \|", out)


def _pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_tables_are_consistent(runs: Path, tmp_path: Path) -> None:
    _cifar(runs)
    out = tmp_path / "r.md"
    _report([str(runs), "--table", "all", "--out", str(out)])
    blocks = re.findall(r"(?:^\|.*\n)+", out.read_text(), flags=re.M)
    assert len(blocks) == len(report.SECTIONS)
    for block in blocks:
        lines = block.splitlines()
        assert len({_pipes(line) for line in lines}) == 1, block
        assert re.fullmatch(r"\|(:?-+:?\|)+", lines[1])


def test_latex_is_balanced(runs: Path, tmp_path: Path) -> None:
    _cifar(runs)
    out = tmp_path / "r.tex"
    _report([str(runs), "--table", "all", "--format", "latex", "--out", str(out)])
    text = out.read_text()
    assert text.isascii()
    assert text.count(r"\begin{table}") == text.count(r"\end{table}") == len(report.SECTIONS)
    unescaped = re.sub(r"\\[{}&%$#_]", "", text)
    assert unescaped.count("{") == unescaped.count("}")
    for spec, body in re.findall(r"\\begin\{tabular\}\{([lr]+)\}\n(.*?)\\end\{tabular\}", text, flags=re.S):
        rows = [line for line in body.splitlines() if line.endswith(r"\\")]
        assert rows and all(len(re.findall(r"(?<!\\)&", row)) == len(spec) - 1 for row in rows)


def test_csv_and_html(runs: Path, tmp_path: Path) -> None:
    _report([str(runs), "--table", "table2", "--format", "csv", "--out", str(tmp_path / "r.csv")])
    for chunk in (tmp_path / "r.csv").read_text().strip().split("\n\n"):
        rows = [r for r in csv.reader(io.StringIO(chunk)) if not r[0].startswith("#")]
        assert len({len(r) for r in rows}) == 1
    _report([str(runs), "--table", "summary", "--format", "html", "--out", str(tmp_path / "r.html")])
    page = (tmp_path / "r.html").read_text()
    assert page.count("<table>") == page.count("</table>") == 1
    assert page.count("<th ") == 12 and page.count("<td ") == 36


def test_unusable_input_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such folder"):
        load(tmp_path / "nope")
    with pytest.raises(UsageError, match=r"no record\.json"):
        load(tmp_path)
    bad = tmp_path / "s" / "r" / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(UsageError, match=str(bad)):
        _report([str(tmp_path)])


def test_plots_written(runs: Path, tmp_path: Path) -> None:
    written, skipped = plots.write_all(load(runs), tmp_path / "plots")
    names = sorted(p.name for p in written)
    assert names == ["digits.png", "digits.svg", "performance_profile.png", "performance_profile.svg"]
    assert all(p.stat().st_size > 5000 for p in written) and skipped == []
    assert (tmp_path / "plots" / "digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paper_reference_csv() -> None:
    ref = paper.load_reference()
    assert list(ref.columns) == ["table", "task", "optimizer", "metric", "mean", "std", "n_runs", "source"]
    assert not ref.duplicated(["table", "task", "optimizer", "metric"]).any()
    assert ref["source"].str.startswith("arXiv 2006.00719v2").all()
    assert len(ref) == 8 + 4 + 6 + 6 + 27 + 2 + 30 + 16 + 8  # ... + Table 6 (2 x 8 multipliers) + Table 7 (8 blocks)
    key = ref.set_index(["table", "task", "optimizer", "metric"])
    assert key.loc[("table4", "ptb_transformer_lm", "adahessian", "ppl"), ["mean", "std", "n_runs"]].tolist() == [
        51.5, 1.2, 5]
    assert key.loc[("table2", "imagenet_resnet18", "adam", "top1"), ["std", "n_runs"]].isna().all()
    assert key.loc[("fig6", "criteo_dlrm", "adagrad", "accuracy"), "mean"] == 79.135
    assert key.loc[("table8", "cifar10_resnet32", "adahessian@3", "cost_x_adam"), "mean"] == 1.64
    assert key.loc[("table6", "iwslt14_transformer", "adamw@lr_scale=5", "bleu"), ["mean", "std"]].tolist() == [
        14.41, 13.25]
    assert pd.isna(key.loc[("table6", "iwslt14_transformer", "adamw@lr_scale=10", "bleu"), "mean"])  # "Diverge"
    assert key.loc[("table7", "iwslt14_transformer", "adahessian@block_size=32", "bleu"), "mean"] == 35.79
