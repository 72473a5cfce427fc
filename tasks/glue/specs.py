"""What each GLUE task is on disk and how it is scored: columns, label set, metrics, the primary metric.

Primary metrics follow the paper's Table 5 (arXiv 2006.00719v2), which reports one number per task:
accuracy for RTE, SST-2, QNLI, MNLI-m/mm; F1 for MRPC and QQP; Spearman correlation for STS-B. Neither the
table nor the paper's text names them (every GLUE mention in the v2 PDF checked); this is the convention of
BERT's GLUE tables (Devlin et al. 2019, Table 1: "F1 scores are reported for QQP and MRPC, Spearman
correlations are reported for STS-B, and accuracy scores are reported for the other tasks") that the
SqueezeBERT paper (arXiv 2006.11316) compares against, and the numbers agree: the MRPC values 90.69 / 91.94
exceed what SqueezeBERT reaches in MRPC accuracy (the public squeezebert-mnli-headless MRPC fine-tune scores
accuracy 88.2, F1 91.4), so they are F1. CoLA (Matthews correlation) and WNLI (accuracy), which the paper
leaves out, use GLUE's official metric.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.base import DataError


@dataclass(frozen=True)
class Columns:
    """Where the fields are in a split's rows: header names, or positions for a file without a header."""

    text_a: str | int
    text_b: str | int | None
    label: str | int | None  # None: the split carries no labels (GLUE's test sets)
    header: bool = True
    n_columns: int | None = None  # headerless files only; a headered file's count is its header's


@dataclass(frozen=True)
class GlueSpec:
    """One GLUE task: its folder, files, columns, labels (None: regression) and metrics."""

    name: str
    folder: str
    columns: Columns  # train and dev share them
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    primary: str
    dev_files: tuple[tuple[str, str], ...] = (("dev", "dev.tsv"),)  # (metric prefix, file)
    train_file: str = "train.tsv"
    score_range: tuple[float, float] = (0.0, 5.0)  # regression targets only

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None



NLI = ("entailment", "not_entailment")
MNLI_LABELS = ("contradiction", "entailment", "neutral")
MNLI_COLUMNS = Columns("sentence1", "sentence2", "gold_label")  # train has 12 columns, dev 16: headers say
SPECS: dict[str, GlueSpec] = {spec.name: spec for spec in (
    # CoLA train/dev have no header: source, label, original label mark, sentence.
    GlueSpec("cola", "CoLA", Columns(3, None, 1, header=False, n_columns=4), ("0", "1"), ("mcc", "accuracy"),
             "mcc"),
    GlueSpec("sst2", "SST-2", Columns("sentence", None, "label"), ("0", "1"), ("accuracy",), "accuracy"),
    GlueSpec("mrpc", "MRPC", Columns("#1 String", "#2 String", "Quality"), ("0", "1"), ("f1", "accuracy"), "f1"),
    GlueSpec("stsb", "STS-B", Columns("sentence1", "sentence2", "score"), None, ("pearson", "spearman"),
             "spearman"),
    GlueSpec("qqp", "QQP", Columns("question1", "question2", "is_duplicate"), ("0", "1"), ("f1", "accuracy"),
             "f1"),
    # MNLI: one training run scores both dev sets; mnli_m selects on matched, mnli_mm on mismatched.
    GlueSpec("mnli_m", "MNLI", MNLI_COLUMNS, MNLI_LABELS, ("accuracy",), "accuracy",
             dev_files=(("m", "dev_matched.tsv"), ("mm", "dev_mismatched.tsv"))),
    GlueSpec("mnli_mm", "MNLI", MNLI_COLUMNS, MNLI_LABELS, ("accuracy",), "accuracy",
             dev_files=(("mm", "dev_mismatched.tsv"), ("m", "dev_matched.tsv"))),
    GlueSpec("qnli", "QNLI", Columns("question", "sentence", "label"), NLI, ("accuracy",), "accuracy"),
    GlueSpec("rte", "RTE", Columns("sentence1", "sentence2", "label"), NLI, ("accuracy",), "accuracy"),
    GlueSpec("wnli", "WNLI", Columns("sentence1", "sentence2", "label"), ("0", "1"), ("accuracy",), "accuracy"),
)}
# Published train / dev sizes (GLUE paper, Wang et al. 2019, Table 1; MNLI dev: matched / mismatched).
PUBLISHED_SIZES: dict[str, tuple[int, ...]] = {
    "cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408), "stsb": (5749, 1500),
    "qqp": (363846, 40430), "mnli_m": (392702, 9815, 9832), "qnli": (104743, 5463), "rte": (2490, 277),
    "wnli": (635, 71),
}


def spec_for(glue_task: str) -> GlueSpec:
    """The spec of `task.glue_task`; an unknown name is a one-line error listing the known ones."""
    if glue_task == "mnli":
        raise DataError("task.glue_task=mnli: choose mnli_m (selects on dev_matched, records glue_mnli_m) or "
                        "mnli_mm (dev_mismatched, glue_mnli_mm); both score both dev sets")
    if glue_task not in SPECS:
        raise DataError(f"task.glue_task={glue_task}: unknown GLUE task; choose one of {', '.join(SPECS)}")
    return SPECS[glue_task]
