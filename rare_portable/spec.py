"""Framework-neutral description of a RARE network.

Every builder, exporter and runtime reads shapes from here; nothing else re-derives them.
The field names follow MindOCR's rec yaml where one exists, so a reader can map one onto the other.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Tuple

import numpy as np

from .charset import Charset
from .errors import UserError


class SpecError(UserError, ValueError):
    """A spec or config that cannot describe a working network; the message names the key."""


MOST_CONFIDENT = "most_confident"  # Rotate90IfVertical: read a tall crop every way (rare-portable extension)
ROTATE_DIRECTIONS = ("counterclockwise", "clockwise", MOST_CONFIDENT)


@dataclass(frozen=True)
class InputSpec:
    """What the network is fed: preprocessing reads this, exporters store it in artifacts."""

    height: int = 32
    width: int = 100
    channels: int = 3
    color: str = "RGB"  # channel order the network expects
    mean: Tuple[float, ...] = (127.0, 127.0, 127.0)
    std: Tuple[float, ...] = (127.0, 127.0, 127.0)
    keep_ratio: bool = False  # resize keeping aspect ratio ...
    padding: bool = False  # ... and pad on the right up to `width`
    # MindOCR Rotate90IfVertical: (h/w threshold, direction). Direction "most_confident" (a rare-portable
    # extension) reads a tall crop as it is and turned each way, and keeps the most confident reading.
    rotate_vertical: Optional[Tuple[float, str]] = None
    # RereadPadded (a rare-portable extension): (margin, below_confidence). A reading less confident than
    # below_confidence is read again with the crop's edge pixels repeated `margin` x its height on every side,
    # and the more confident reading is kept: tight real crops cut letters' edges that rendered words keep.
    reread_padded: Optional[Tuple[float, float]] = None

    def __post_init__(self):
        if self.color not in ("RGB", "BGR"):
            raise SpecError(f"input.color must be RGB or BGR, got {self.color!r}")
        for key in ("mean", "std"):
            if len(getattr(self, key)) != self.channels:
                raise SpecError(f"input.{key} has {len(getattr(self, key))} values for {self.channels} channels")
        if any(s == 0 for s in self.std):
            raise SpecError("input.std contains 0")
        if self.rotate_vertical is not None and self.rotate_vertical[1] not in ROTATE_DIRECTIONS:
            raise SpecError(f"Rotate90IfVertical.direction must be one of {', '.join(ROTATE_DIRECTIONS)}, "
                            f"got {self.rotate_vertical[1]!r}")
        if self.reread_padded is not None:
            margin, below = self.reread_padded
            if not 0 < margin <= 1:
                raise SpecError(f"RereadPadded.margin must be in (0, 1] (a fraction of the crop's height), got {margin}")
            if not 0 < below <= 1:
                raise SpecError(f"RereadPadded.below_confidence must be in (0, 1], got {below}")
        if self.padding and not self.keep_ratio:
            raise SpecError("input.padding needs input.keep_ratio: padding only fills what a ratio-keeping resize leaves")

    def reading_rules(self) -> Tuple[str, ...]:
        """What a `Recognizer` does beyond reading each crop once as it is, in words, for reports."""
        rules = []
        if self.rotate_vertical is not None:
            threshold, direction = self.rotate_vertical
            rules.append(f"crops over {threshold:g}x taller than wide " + (
                "also read turned each way, the most confident reading kept" if direction == MOST_CONFIDENT
                else f"read turned {direction} instead"))
        if self.reread_padded is not None:
            margin, below = self.reread_padded
            rules.append(f"readings less confident than {below:g} read again with the edges repeated {margin:g}x "
                         f"the height, the more confident kept")
        return tuple(rules)

    @property
    def shape(self) -> Tuple[int, int, int]:
        """(channels, height, width) of one preprocessed image."""
        return self.channels, self.height, self.width

    def example_batch(self, batch: int, seed: int = 0) -> np.ndarray:
        """A preprocessed-range batch [batch, C, H, W] of uniform noise in [-1, 1): what exporters trace and
        check with, benchmarks time and tests compare on; the same seed gives the same batch everywhere."""
        return np.random.default_rng(seed).uniform(-1, 1, (batch, *self.shape)).astype(np.float32)


@dataclass(frozen=True)
class TransformSpec:
    """TPS-STN rectifier as MindOCR's `STN_ON` (ASTER-style localisation net, TPS grid, bilinear sampling)."""

    name: str = "STN_ON"
    tps_inputsize: Tuple[int, int] = (32, 64)  # the localisation net sees the image resized to this
    tps_outputsize: Tuple[int, int] = (32, 100)  # rectified image size, equal to the network input
    num_control_points: int = 20
    tps_margins: Tuple[float, float] = (0.05, 0.05)
    stn_activation: str = "none"  # "none" or "sigmoid" on the predicted control points
    loc_channels: Tuple[int, ...] = (32, 64, 128, 256, 256, 256)  # conv blocks, a 2x2 max-pool between each
    loc_fc_hidden: int = 512
    align_corners: bool = False  # both grid_sample and the resize to tps_inputsize
    padding_mode: str = "zeros"

    def __post_init__(self):
        if self.name != "STN_ON":
            raise SpecError(f"model.transform.name: only STN_ON is supported, got {self.name!r}")
        if self.num_control_points % 2 or self.num_control_points < 4:
            raise SpecError("model.transform.num_control_points must be an even number >= 4")
        if self.stn_activation not in ("none", "sigmoid"):
            raise SpecError(f"model.transform.stn_activation must be none or sigmoid, got {self.stn_activation!r}")
        if self.padding_mode not in ("zeros", "border"):
            raise SpecError(f"model.transform.padding_mode must be zeros or border, got {self.padding_mode!r}")

    @property
    def loc_feature_size(self) -> Tuple[int, int]:
        """(H, W) after the localisation convnet: one 2x2 floor max-pool between consecutive blocks."""
        h, w = self.tps_inputsize
        for _ in range(len(self.loc_channels) - 1):
            h, w = h // 2, w // 2
        return h, w

    @property
    def loc_flat_features(self) -> int:
        h, w = self.loc_feature_size
        return self.loc_channels[-1] * h * w


@dataclass(frozen=True)
class BackboneSpec:
    """ResNet-vd for recognition (MindOCR `rec_resnet34`): 3-conv stem, BasicBlocks, H strided to 1."""

    name: str = "rec_resnet34"
    in_channels: int = 3
    stem_channels: Tuple[int, int, int] = (32, 32, 64)
    depths: Tuple[int, ...] = (3, 4, 6, 3)
    widths: Tuple[int, ...] = (64, 128, 256, 512)

    def __post_init__(self):
        if len(self.depths) != len(self.widths):
            raise SpecError(f"model.backbone: depths {self.depths} and widths {self.widths} differ in length")
        if min(self.depths) < 1:
            raise SpecError("model.backbone.depths: every stage needs at least one block")

    @property
    def out_channels(self) -> int:
        return self.widths[-1]

    def stage_stride(self, stage: int) -> Tuple[int, int]:
        """First block of every stage but the first halves H only: width stays for the sequence."""
        return (1, 1) if stage == 0 else (2, 1)

    def stages_output_size(self, height: int, width: int) -> Tuple[int, int]:
        """(H, W) after the 'same' 3x3/2 stem max-pool and the (2,1)-strided stages."""
        h, w = math.ceil(height / 2), math.ceil(width / 2)
        for _ in range(len(self.depths) - 1):
            h = math.ceil(h / 2)
        return h, w

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        """Feature map (H, W): the stages' output after the closing 'same' 2x2/2 max-pool."""
        h, w = self.stages_output_size(height, width)
        return math.ceil(h / 2), math.ceil(w / 2)


@dataclass(frozen=True)
class NeckSpec:
    """2-layer bidirectional LSTM over the feature columns (MindOCR `RNNEncoder`)."""

    name: str = "RNNEncoder"
    hidden_size: int = 256
    num_layers: int = 2

    @property
    def out_channels(self) -> int:
        return 2 * self.hidden_size


@dataclass(frozen=True)
class HeadSpec:
    """GRU attention decoder with a one-hot previous token (MindOCR `AttentionHead`)."""

    name: str = "AttentionHead"
    hidden_size: int = 256
    num_classes: int = 38
    batch_max_length: int = 25

    @property
    def num_steps(self) -> int:
        """One step per character plus one for STOP."""
        return self.batch_max_length + 1


@dataclass(frozen=True)
class LexiconSpec:
    """LexiconCorrect (a rare-portable extension, `postprocess.lexicon`; rare_portable/lexicon.py): a reading that
    is not a word of `words` becomes the likeliest word of its length within `max_substitutions` characters (or,
    with `max_skipped`, one character longer: the skip counts as one of them), when the model finds it at most
    e^max_log_ratio times less likely than its own reading; `prior: zipf` weighs the candidates by 1/rank; with
    `word_margin`, a reading that is a word gives way to a near word whose likelihood x prior beats its own by
    e^word_margin."""

    words: str = "en"  # a shipped lexicon's name (rare_portable/lexicons/) or a text file, one word per line
    max_substitutions: int = 2
    max_log_ratio: float = 6.0
    max_skipped: int = 1  # 1: words one character longer (one the model skipped) are candidates too
    prior: str = "zipf"  # zipf: the lexicon lists words most frequent first, a word's prior is 1/rank; none
    word_margin: Optional[float] = 1.0  # readings that are words compete too; None: a word read is kept

    def __post_init__(self):
        if not isinstance(self.words, str) or not self.words:
            raise SpecError(f"postprocess.lexicon.words must name a lexicon or a file, got {self.words!r}")
        if isinstance(self.max_substitutions, bool) or not isinstance(self.max_substitutions, int) \
                or self.max_substitutions < 1:
            raise SpecError(f"postprocess.lexicon.max_substitutions must be a whole number >= 1, "
                            f"got {self.max_substitutions!r}")
        if isinstance(self.max_log_ratio, bool) or not isinstance(self.max_log_ratio, (int, float)) \
                or not self.max_log_ratio > 0:
            raise SpecError(f"postprocess.lexicon.max_log_ratio must be > 0, got {self.max_log_ratio!r}")
        if isinstance(self.max_skipped, bool) or self.max_skipped not in (0, 1):
            raise SpecError(f"postprocess.lexicon.max_skipped must be 0 or 1, got {self.max_skipped!r}")
        if self.word_margin is not None and (isinstance(self.word_margin, bool)
                                             or not isinstance(self.word_margin, (int, float))
                                             or not self.word_margin >= 0):
            raise SpecError(f"postprocess.lexicon.word_margin must be >= 0, or null to keep every word read, "
                            f"got {self.word_margin!r}")
        if self.prior not in ("zipf", "none"):
            raise SpecError(f"postprocess.lexicon.prior must be zipf (words listed most frequent first) or none, "
                            f"got {self.prior!r}")

    def rule(self) -> str:
        """The rule in words, for reports."""
        skipped = " (one of them a character skipped)" if self.max_skipped else ""
        prior = ", weighed by 1/rank (Zipf)" if self.prior == "zipf" else ""
        words = ("" if self.word_margin is None else f"; readings that are words give way to a near word over "
                 f"e^{self.word_margin:g} times likelier")
        return (f"readings that are not words of the {self.words} lexicon become the likeliest word within "
                f"{self.max_substitutions} characters{skipped}, when at most e^{self.max_log_ratio:g} times less "
                f"likely{prior}{words}")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    charset: Charset
    input: InputSpec = field(default_factory=InputSpec)
    transform: Optional[TransformSpec] = None
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    neck: NeckSpec = field(default_factory=NeckSpec)
    head: HeadSpec = field(default_factory=HeadSpec)
    lexicon: Optional[LexiconSpec] = None  # decoding, not the network: LexiconCorrect

    def __post_init__(self):
        if self.head.num_classes != self.charset.num_classes:
            raise SpecError(
                f"model.head.out_channels is {self.head.num_classes} but the dictionary "
                f"({self.charset.source}) has {len(self.charset.chars)} characters + GO + STOP = "
                f"{self.charset.num_classes}: set common.num_classes/model.head.out_channels to "
                f"{self.charset.num_classes} or use the dictionary the weights were trained with"
            )
        if self.backbone.in_channels != self.input.channels:
            raise SpecError(
                f"model.backbone.in_channels {self.backbone.in_channels} != input channels {self.input.channels}"
            )
        if self.transform is not None and tuple(self.transform.tps_outputsize) != (self.input.height, self.input.width):
            raise SpecError(
                f"model.transform.tps_outputsize {list(self.transform.tps_outputsize)} must equal the input size "
                f"[{self.input.height}, {self.input.width}]"
            )
        fh, _ = self.feature_size
        if fh != 1:
            raise SpecError(
                f"input height {self.input.height} leaves a feature map {fh} rows high; the sequence "
                f"model needs 1 (use height 32 with this backbone)"
            )

    def check_input_shape(self, shape: Tuple[int, ...]) -> None:
        """A clear error for a batch the network cannot take, before a framework fails deep inside."""
        i = self.input
        if len(shape) != 4:
            raise SpecError(f"expected a batch N x {i.channels} x {i.height} x {i.width} (NCHW), got shape {list(shape)}")
        _, c, h, w = shape
        if c != i.channels:
            raise SpecError(f"input has {c} channels, the model expects {i.channels} ({i.color}); "
                            f"convert grey images to {i.color} before preprocessing")
        if (h, w) != (i.height, i.width):
            raise SpecError(f"input is {h}x{w}, the model expects {i.height}x{i.width}: resize (and pad) with "
                            f"rare_portable.data.preprocess, which reads the size from the config")

    def reading_rules(self) -> Tuple[str, ...]:
        """What a `Recognizer` does beyond reading each crop once as it is and decoding greedily, for reports."""
        return self.input.reading_rules() + ((self.lexicon.rule(),) if self.lexicon is not None else ())

    @property
    def feature_size(self) -> Tuple[int, int]:
        return self.backbone.output_size(self.input.height, self.input.width)

    @property
    def sequence_length(self) -> int:
        """Encoder time steps for the configured input width."""
        return self.feature_size[1]

    @property
    def num_classes(self) -> int:
        return self.head.num_classes


def spec_to_dict(spec: ModelSpec) -> dict:
    """Plain JSON-able form, stored in exported artifacts so a runtime needs nothing else."""
    return asdict(spec)


def spec_from_dict(data: dict) -> ModelSpec:
    def tuples(d: dict) -> dict:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

    try:
        return ModelSpec(
            name=data["name"],
            charset=Charset(chars=tuple(data["charset"]["chars"]), source=data["charset"]["source"]),
            input=InputSpec(**tuples(data["input"])),
            transform=TransformSpec(**tuples(data["transform"])) if data.get("transform") else None,
            backbone=BackboneSpec(**tuples(data["backbone"])),
            neck=NeckSpec(**data["neck"]),
            head=HeadSpec(**data["head"]),
            lexicon=LexiconSpec(**data["lexicon"]) if data.get("lexicon") else None,  # absent before LexiconCorrect
        )
    except (KeyError, TypeError) as e:
        raise SpecError(f"stored spec is incomplete or from another version ({e})") from None
