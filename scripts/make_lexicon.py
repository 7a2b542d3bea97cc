"""Writes rare_portable/lexicons/en.txt, the shipped lexicon LexiconCorrect reads with (postprocess.lexicon.words:
en): the 100,000 most frequent English words of wordfreq (the 'synth' extra), letters only, most frequent first.
`--count N` keeps another number (`--count 0`: every word it lists, 293,005 with wordfreq 3.1), `-o FILE` writes
elsewhere; the lexicon shipped until 2026-12-07 was `--count 50000` (docs/shipped-model.md compares them).

    python scripts/make_lexicon.py [--count 100000] [-o FILE]

`rare synth --top-words N` draws its words from the same list, so rendered held-out words are in it: judge the
lexicon on real crops (docs/shipped-model.md).
"""
import argparse
from pathlib import Path

from rare_portable.data.resources import frequent_words
from rare_portable.lexicon import SHIPPED_LEXICONS

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--count", type=int, default=100000, help="the N most frequent words (0: every word)")
parser.add_argument("-o", "--out", type=Path, default=SHIPPED_LEXICONS / "en.txt")
args = parser.parse_args()
words = frequent_words(args.count or None)
args.out.write_text("\n".join(words) + "\n", encoding="utf-8")
print(f"wrote {args.out} ({len(words)} words)")
