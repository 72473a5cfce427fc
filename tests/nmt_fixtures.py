"""Translation fixtures from the real Multi30k (German-English) in ../shared/data: the tokenized files turned into
prepare-iwslt14.sh's text layout with the project's own BPE, a data-bin by the project's own writer, and the raw
sentences laid out as the IWSLT14 and WMT14 releases for the preparation code."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from tasks.nmt.corpus import load_corpus, write_data_bin
from tasks.nmt.prepare import write_bpe_layout

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
TINY_MODEL = ["task.model.layers=2", "task.model.dim=64", "task.model.ffn_dim=128", "task.model.heads=4",
              "task.model.dropout=0.1"]


def multi30k_dir() -> Path:
    for root in (SHARED, Path("/work/shared/data")):
        if (root / "multi30k" / "tok").is_dir():
            return root / "multi30k"
    pytest.skip(f"Multi30k absent: expected {SHARED / 'multi30k'} (or /work/shared/data/multi30k) with tok/")


def read_tok(split: str, lang: str, n: int) -> list[str]:
    path = multi30k_dir() / "tok" / f"{FILES[split]}.lc.norm.tok.{lang}"
    return path.read_text(encoding="utf-8").splitlines()[:n]


def write_text_layout(out: Path, n_train: int = 1000, n_eval: int = 100, merges: int = 300) -> Path:
    """{train,valid,test}.{de,en} + code: Multi30k's lowercased Moses-tokenized text with our joint BPE."""
    sizes = {"train": n_train, "valid": n_eval, "test": n_eval}
    splits = {s: (read_tok(s, "de", n), read_tok(s, "en", n)) for s, n in sizes.items()}
    write_bpe_layout(splits, out, "de", "en", merges)
    return out


def write_data_bin_from(text_dir: Path, out: Path) -> Path:
    write_data_bin(load_corpus(text_dir, "de", "en", joined=True), out, "de", "en")
    return out


def write_iwslt_release(out: Path, n_train: int = 300, n_test: int = 20) -> Path:
    """Raw Multi30k sentences in the IWSLT14 release layout (de-en/train.tags.de-en.*, IWSLT14.TED*.xml), with the
    release's tag lines, so prepare_iwslt14 runs end to end on real text."""
    raw = {lang: gzip.decompress((multi30k_dir() / f"train.{lang}.gz").read_bytes()).decode("utf-8").splitlines()
           for lang in ("de", "en")}
    folder = out / "de-en"
    folder.mkdir(parents=True)
    for lang in ("de", "en"):
        lines = [f"<url>http://www.ted.com/talks/{lang}</url>", "<keywords>talks</keywords>", "<talkid>1</talkid>",
                 f"<title>A title {lang}</title>", f"<description>About {lang}</description>",
                 *raw[lang][:n_train]]
        (folder / f"train.tags.de-en.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        start = n_train
        for name in ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
                     "IWSLT14.TED.tst2012"):
            segs = raw[lang][start:start + n_test]
            start += n_test
            body = "\n".join(f'<seg id="{i}"> {s} </seg>' for i, s in enumerate(segs, 1))
            xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<mteval>\n<srcset setid="{name}" srclang="{lang}">\n'
                   f'<doc docid="1" genre="lectures">\n<talkid>1</talkid>\n{body}\n</doc>\n</srcset>\n</mteval>\n')
            (folder / f"{name}.de-en.{lang}.xml").write_text(xml, encoding="utf-8")
    return out


def write_wmt14_release(out: Path, crafted: list[dict[str, str]], test_crafted: list[dict[str, str]],
                        sizes: tuple[int, int, int] = (150, 100, 60), n_test: int = 20
                        ) -> tuple[Path, dict[str, list[str]]]:
    """Raw Multi30k sentences in prepare-wmt14en2de.sh's orig/ layout: training/europarl-v7.de-en.*,
    commoncrawl.de-en.* left packed in training-parallel-commoncrawl.tgz (with the `crafted` pairs first),
    training/news-commentary-v12.de-en.*, and test-full/newstest2014-deen-{src.en,ref.de}.sgm (`test_crafted`
    first). Returns the folder and the concatenated training lines per language, in the order the script cats them."""
    raw = {lang: gzip.decompress((multi30k_dir() / f"train.{lang}.gz").read_bytes()).decode("utf-8").splitlines()
           for lang in ("de", "en")}
    ends = [sum(sizes[:i + 1]) for i in range(3)]
    parts = {lang: [raw[lang][:ends[0]], [pair[lang] for pair in crafted] + raw[lang][ends[0]:ends[1]],
                    raw[lang][ends[1]:ends[2]]] for lang in ("de", "en")}
    (out / "training").mkdir(parents=True)
    with tarfile.open(out / "training-parallel-commoncrawl.tgz", "w:gz") as tgz:
        for lang in ("de", "en"):
            (out / f"training/europarl-v7.de-en.{lang}").write_text("\n".join(parts[lang][0]) + "\n", "utf-8")
            data = ("\n".join(parts[lang][1]) + "\n").encode("utf-8")
            member = tarfile.TarInfo(f"commoncrawl.de-en.{lang}")
            member.size = len(data)
            tgz.addfile(member, io.BytesIO(data))
            (out / f"training/news-commentary-v12.de-en.{lang}").write_text("\n".join(parts[lang][2]) + "\n", "utf-8")
    (out / "test-full").mkdir()
    for lang, side, tag in (("en", "src", "srcset"), ("de", "ref", "refset")):
        segs = [pair[lang] for pair in test_crafted] + raw[lang][ends[2]:ends[2] + n_test]
        body = "\n".join(f'<seg id="{i}">{s}</seg>' for i, s in enumerate(segs, 1))
        sgm = (f'<{tag} setid="newstest2014" srclang="any" trglang="de">\n<doc sysid="{side}" docid="1012-bbc" '
               f'genre="news" origlang="en">\n<p>\n{body}\n</p>\n</doc>\n</{tag}>\n')
        (out / f"test-full/newstest2014-deen-{side}.{lang}.sgm").write_text(sgm, encoding="utf-8")
    return out, {lang: [line for part in parts[lang] for line in part] for lang in ("de", "en")}
