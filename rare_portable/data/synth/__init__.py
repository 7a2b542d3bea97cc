"""Synthetic MJSynth-like word crops, so a RARE model can be trained or smoke-tested without a dataset.

Sample `i` is a pure function of (plan, seed, i): it draws from its own numpy Generator seeded with
(seed, i), so the bytes do not depend on the worker count or on which samples were rendered before.
Text is laid out with PIL's BASIC engine because raqm, where installed, would move glyphs between machines.
"""
from .base import PathLike, SynthError
from .fonts import BUILTIN_FONT_DIR, FontSurvey, GlyphJudge, SynthFont, font_files_in, survey_font
from .lexicon import BUILTIN_LEXICON, CASES, builtin_lexicon, read_lexicon
from .plan import IMAGE_FORMATS, MIN_HEIGHT, SynthPlan, make_plan
from .render import WordRenderer
from .writer import SynthResult, render_samples, render_words, save_preview, synthesize_lmdb

__all__ = [
    "BUILTIN_FONT_DIR", "BUILTIN_LEXICON", "CASES", "IMAGE_FORMATS", "MIN_HEIGHT", "FontSurvey", "GlyphJudge",
    "PathLike", "SynthError", "SynthFont", "SynthPlan", "SynthResult", "WordRenderer", "builtin_lexicon",
    "font_files_in", "make_plan", "read_lexicon", "render_samples", "render_words", "save_preview", "survey_font",
    "synthesize_lmdb",
]
