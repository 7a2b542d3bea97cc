"""Writes rare_portable/lexicons/en.txt, the shipped lexicon LexiconCorrect reads with (postprocess.lexicon.words:
en): the 50,000 most frequent English words of wordfreq (the 'synth' extra), letters only, most frequent first.

    python scripts/make_lexicon.py [--count 50000]

`rare synth --top-words N` draws its words from the same list, so rendered held-out words are in it: judge the
lexicon on real crops (docs/shipped-model.md).
"""
import argparse
from pathlib import Path

from rare_portable.data.resources import frequent_words
from rare_portable.lexicon import SHIPPED_LEXICONS

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--count", type=int, default=50000)
args = parser.parse_args()
out = SHIPPED_LEXICONS / "en.txt"
out.write_text("\n".join(frequent_words(args.count)) + "\n", encoding="utf-8")
print(f"wrote {out} ({args.count} words)")
