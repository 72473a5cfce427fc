"""Tiny GLUE folders in the exact on-disk format of GLUE's download script, quirks included."""

from __future__ import annotations

from pathlib import Path

RTE_HEADER = "index\tsentence1\tsentence2\tlabel"
MNLI_TRAIN_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                     "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")
MNLI_DEV_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                   "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\t"
                   "gold_label")


def write_lines(path: Path, lines: list[str], bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_rte(root: Path, n_train: int = 6, n_dev: int = 4, bad_label: bool = False,
              extra_train_lines: tuple[str, ...] = ()) -> Path:
    labels = ["entailment", "not_entailment"]
    train = [RTE_HEADER] + [f"{i}\tThe cat {i} sat.\tA cat sat.\t{labels[i % 2]}" for i in range(n_train)]
    dev = [RTE_HEADER] + [f"{i}\tA dog {i} ran.\tA dog ran.\t{labels[i % 2]}" for i in range(n_dev)]
    if bad_label:
        dev[2] = "1\tA dog ran.\tA dog ran.\tmaybe"
    write_lines(root / "RTE" / "train.tsv", train + list(extra_train_lines))
    write_lines(root / "RTE" / "dev.tsv", dev)
    return root


def write_qqp(root: Path) -> Path:
    """Questions with quote characters that open and never close: a quoting CSV reader merges lines."""
    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
    rows = ['0\t1\t2\tWhat is "best\tWhy is it "so good?\t0',
            '1\t3\t4\tHow do I learn "Python"?\tWhat is the best way to learn Python?\t1',
            '2\t5\t6\t"Quoted start\tplain\t0']
    write_lines(root / "QQP" / "train.tsv", [header, *rows])
    write_lines(root / "QQP" / "dev.tsv", [header, *rows[:2]])
    return root


def write_cola(root: Path) -> Path:
    """CoLA's train/dev: no header; source, label, original mark (often empty), sentence."""
    rows = ["gj04\t1\t\tOur friends won't buy this analysis.", "gj04\t0\t*\tThe more we study verbs, the rest.",
            "cj99\t1\t\tHe left \"quickly."]
    write_lines(root / "CoLA" / "train.tsv", rows)
    write_lines(root / "CoLA" / "dev.tsv", rows[:2])
    return root


def write_mrpc(root: Path) -> Path:
    """MRPC's header starts with a UTF-8 byte-order mark."""
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    rows = ["1\t702876\t702977\tAmrozi accused his brother , \" the witness \" .\tReferring to \" the witness \" .",
            "0\t2108705\t2108831\tYucaipa owned Dominick 's .\tYucaipa bought Dominick 's in 1995 ."]
    write_lines(root / "MRPC" / "train.tsv", [header, *rows], bom=True)
    write_lines(root / "MRPC" / "dev.tsv", [header, *rows], bom=True)
    return root


def write_mnli(root: Path) -> Path:
    """MNLI: 12 columns in train, 16 in dev_matched / dev_mismatched."""
    parse = "\t".join(["( a )"] * 4)
    train = [MNLI_TRAIN_HEADER] + [f"{i}\t1\t1e\tfiction\t{parse}\tA man {i}.\tA person.\tneutral\t"
                                   f"{['contradiction', 'entailment', 'neutral'][i % 3]}" for i in range(6)]
    dev = [MNLI_DEV_HEADER] + [f"{i}\t1\t1e\tslate\t{parse}\tA woman {i}.\tA person.\t"
                               + "\t".join(["entailment"] * 5) + "\tentailment" for i in range(3)]
    write_lines(root / "MNLI" / "train.tsv", train)
    write_lines(root / "MNLI" / "dev_matched.tsv", dev)
    write_lines(root / "MNLI" / "dev_mismatched.tsv", dev[:2])
    return root
