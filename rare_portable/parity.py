"""The conformance suite behind `rare parity`: every available runtime on the same inputs, against the
PyTorch network as reference.

Per runtime it reports the max |diff| of probabilities, whether greedy ids and decoded strings are
identical, and a comparison that one near-tie cannot cascade through: steps are compared only up to
a sample's first greedy divergence, and a divergence where the reference's top two probabilities are
within the tolerance is a near-tie, not a violation. Framework runtimes are also compared teacher-forced
(all runtimes fed the reference's ids), which checks every step of every sample.

An int8 artifact (`rare export --int8`) is its own tolerance class: quantization moves probabilities by
up to a few percent, so it is held to the words instead: at most a share of the samples
(INT8_MAX_WORD_DISAGREEMENT) may decode to another word than the fp32 reference's. A bf16 runtime
(`openvino-bf16`) is a class of its own the same way, with BF16_MAX_WORD_DISAGREEMENT.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .errors import UserError
from .labels import decode
from .spec import ModelSpec
from .tolerances import BF16_WORD_DISAGREEMENT, FP32_RUNTIME, INT8_WORD_DISAGREEMENT

# The bounds are classes in rare_portable/tolerances.py (with the values they were set from); these names stay.
# fp32 tolerance for every runtime pair: probabilities within the bound, strings identical.
# (Anchors: ONNX's backend tests use rtol 1e-3/atol 1e-7, Polygraphy defaults to 1e-5/1e-5.)
FP32_TOLERANCE = FP32_RUNTIME.bound
# int8 class: at most this share of the samples may decode (greedy) to another word than the reference.
INT8_MAX_WORD_DISAGREEMENT = INT8_WORD_DISAGREEMENT.bound
# bf16 class (OpenVINO on a CPU with bf16 units): probabilities move by ~5e-3; at most this share of words may
# differ (issue 14's bound). A trained model on real held-out crops differed on 2.1% (benchmarks/precision.py), so
# bf16 is checked when asked for (`--backend openvino-bf16`), not by default.
BF16_MAX_WORD_DISAGREEMENT = BF16_WORD_DISAGREEMENT.bound
ALL_BACKENDS = ("torch", "mindspore", "mindspore-graph", "onnxruntime", "mindir", "mslite", "openvino")
REFERENCE = "torch"
# Backends that run the same exported .onnx file: it is exported once per parity run.
ONNX_BACKENDS = ("onnxruntime", "openvino", "openvino-bf16")
# `rare parity --artifact FILE`: the runtime that opens an exported file, by its suffix.
ARTIFACT_RUNTIMES = {".onnx": "onnxruntime", ".mindir": "mindir", ".ms": "mslite"}


@dataclass
class PairResult:
    backend: str
    reference: str
    max_abs_diff: float  # every step of every sample
    aligned_max_abs_diff: float  # steps before each sample's first greedy divergence
    teacher_forced_max_abs_diff: Optional[float]  # framework runtimes only
    ids_identical: bool
    strings_identical: bool
    near_ties: List[Dict] = field(default_factory=list)  # divergences at a reference near-tie
    violations: List[str] = field(default_factory=list)
    tolerance_class: str = "fp32"  # or "int8-static" / "int8-dynamic": held to words, not probabilities
    word_disagreement: Optional[float] = None  # int8/bf16: share of samples whose word differs from the reference
    max_word_disagreement: Optional[float] = None  # int8/bf16: the bound that share is held to
    words_differing: List[Dict] = field(default_factory=list)  # int8: {"sample", "text", "reference"}

    @property
    def ok(self) -> bool:
        return not self.violations


def first_divergences(ids: np.ndarray, ref_ids: np.ndarray) -> List[int]:
    """Per sample, the first step whose greedy id differs from the reference's (the step count if none)."""
    firsts = []
    for sample_ids, sample_ref_ids in zip(ids, ref_ids):
        differ = np.nonzero(sample_ids != sample_ref_ids)[0]
        firsts.append(int(differ[0]) if len(differ) else len(sample_ids))
    return firsts


def aligned_diff(probs: np.ndarray, ref: np.ndarray, stops: Sequence[int]) -> float:
    """Max |diff| of probabilities over the steps before each sample's first greedy divergence."""
    return max([float(np.abs(p[:stop] - r[:stop]).max()) for p, r, stop in zip(probs, ref, stops) if stop],
               default=0.0)


def compare(backend: str, probs: np.ndarray, ref: np.ndarray, spec: ModelSpec, tolerance: float,
            tf_probs: Optional[np.ndarray] = None, tf_ref: Optional[np.ndarray] = None) -> PairResult:
    ids, ref_ids = probs.argmax(-1), ref.argmax(-1)
    texts = [t for t, _ in decode(probs, spec.charset)]
    ref_texts = [t for t, _ in decode(ref, spec.charset)]
    stops = first_divergences(ids, ref_ids)
    aligned, near_ties, violations = aligned_diff(probs, ref, stops), [], []
    for n, stop in enumerate(stops):
        if stop < ref.shape[1]:
            top2 = np.sort(ref[n, stop])[-2:]
            gap = float(top2[1] - top2[0])
            if gap <= tolerance:
                near_ties.append({"sample": n, "step": stop, "top2_gap": gap})
            else:
                violations.append(f"sample {n}: greedy ids differ at step {stop} (reference top-2 gap {gap:.2e})")
    tied = {t["sample"] for t in near_ties}
    for n, (a, b) in enumerate(zip(texts, ref_texts)):
        if a != b and n not in tied:
            violations.append(f"sample {n}: {a!r} vs reference {b!r}")
    if aligned > tolerance:
        violations.append(f"probabilities differ by {aligned:.2e} > {tolerance:.1e}")
    tf = None
    if tf_probs is not None:
        tf = float(np.abs(tf_probs - tf_ref).max())
        if tf > tolerance:
            violations.append(f"teacher-forced probabilities differ by {tf:.2e} > {tolerance:.1e}")
    return PairResult(
        backend=backend, reference=REFERENCE, max_abs_diff=float(np.abs(probs - ref).max()),
        aligned_max_abs_diff=aligned, teacher_forced_max_abs_diff=tf, ids_identical=bool((ids == ref_ids).all()),
        strings_identical=texts == ref_texts, near_ties=near_ties, violations=violations,
    )


def compare_words(backend: str, probs: np.ndarray, ref: np.ndarray, spec: ModelSpec, tolerance_class: str,
                  max_disagreement: float) -> PairResult:
    """The int8 and bf16 classes: greedy words may differ from the reference's on at most `max_disagreement`
    of the samples; probabilities are reported, not bounded."""
    ids, ref_ids = probs.argmax(-1), ref.argmax(-1)
    texts = [t for t, _ in decode(probs, spec.charset)]
    ref_texts = [t for t, _ in decode(ref, spec.charset)]
    differing = [{"sample": n, "text": a, "reference": b} for n, (a, b) in enumerate(zip(texts, ref_texts)) if a != b]
    share = len(differing) / len(ref)
    violations = []
    if share > max_disagreement:
        shown = "; ".join(f"sample {d['sample']}: {d['text']!r} vs {d['reference']!r}" for d in differing[:3])
        violations.append(f"{len(differing)} of {len(ref)} words differ from the reference ({share:.1%} > "
                          f"{max_disagreement:.1%} allowed for {tolerance_class}): {shown}")
    return PairResult(
        backend=backend, reference=REFERENCE, max_abs_diff=float(np.abs(probs - ref).max()),
        aligned_max_abs_diff=aligned_diff(probs, ref, first_divergences(ids, ref_ids)),
        teacher_forced_max_abs_diff=None, ids_identical=bool((ids == ref_ids).all()),
        strings_identical=not differing, violations=violations, tolerance_class=tolerance_class,
        word_disagreement=share, max_word_disagreement=max_disagreement, words_differing=differing,
    )


def after_stop(ids: np.ndarray) -> np.ndarray:
    """[N, steps] True for the steps after each sample's first STOP (none where it never stops)."""
    from .charset import STOP

    stop = np.where((ids == STOP).any(1), (ids == STOP).argmax(1), ids.shape[1])
    return np.arange(ids.shape[1])[None, :] > stop[:, None]


def teacher_forced(runtime, batch: np.ndarray, ids: np.ndarray) -> Optional[np.ndarray]:
    """Softmax of eval-mode logits with `ids` as the previous tokens, for runtimes holding a network."""
    net = getattr(runtime, "net", None)
    if net is None:
        return None
    from .nets import backend_of, framework_module

    targets = np.concatenate([np.zeros((len(ids), 1), ids.dtype), ids], axis=1).astype(np.int32)
    logits = framework_module(backend_of(net)).infer(net, batch, targets)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@dataclass
class ParityReport:
    config: str
    inputs: Dict[str, int]
    tolerance: float
    max_word_disagreement: float  # the int8 class's bound
    results: Dict[str, List[PairResult]]  # input set -> one result per runtime
    unavailable: Dict[str, str]  # backend -> why it did not run

    @property
    def ok(self) -> bool:
        return all(r.ok for rows in self.results.values() for r in rows)

    def to_json(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def run_parity(spec: ModelSpec, weights, input_sets: Dict[str, np.ndarray], backends: Sequence[str] = ALL_BACKENDS,
               tolerance: float = FP32_TOLERANCE, workdir: Optional[Path] = None,
               progress: Callable[[str], None] = lambda msg: None, artifacts: Sequence[Path] = (),
               max_word_disagreement: float = INT8_MAX_WORD_DISAGREEMENT) -> ParityReport:
    """Export what the backends need into `workdir`, run each on every input set, compare with PyTorch.

    `artifacts` are files exported before (e.g. an int8 ONNX model), checked as they are; each row is
    named `runtime:file`."""
    from runtimes import open_runtime

    workdir = Path(workdir or tempfile.mkdtemp(prefix="rare-parity-"))
    runtimes, unavailable, exported = {}, {}, {}
    for backend in [REFERENCE] + [b for b in backends if b != REFERENCE]:
        try:
            progress(f"preparing {backend}")
            kind = "onnx" if backend in ONNX_BACKENDS else backend
            if kind not in exported:
                exported[kind] = artifact_for(backend, spec, weights, workdir)
            artifact = exported[kind]
            runtimes[backend] = open_runtime(backend, spec, artifact if artifact else weights)
        except UserError as e:  # a runtime that cannot run here is reported, not fatal
            unavailable[backend] = str(e)
    for path in map(Path, artifacts):
        if path.suffix not in ARTIFACT_RUNTIMES:
            raise UserError(f"{path}: not an exported artifact (suffix {path.suffix or 'none'}); pass a "
                            f"{', '.join(ARTIFACT_RUNTIMES)} file from `rare export`")
        label = f"{ARTIFACT_RUNTIMES[path.suffix]}:{path.name}"
        try:
            runtimes[label] = open_runtime(ARTIFACT_RUNTIMES[path.suffix], spec, path)
        except UserError as e:
            unavailable[label] = str(e)
    if REFERENCE in unavailable:
        raise RuntimeError(f"the reference runtime ({REFERENCE}) is unavailable: {unavailable[REFERENCE]}")
    results = {}
    for name, batch in input_sets.items():
        ref = runtimes[REFERENCE].predict(batch)
        ref_ids = ref.argmax(-1)
        tf_ref = teacher_forced(runtimes[REFERENCE], batch, ref_ids)
        rows = []
        for backend, runtime in runtimes.items():
            if backend == REFERENCE:
                continue
            progress(f"{name}: {backend}")
            probs = runtime.predict(batch)
            if runtime.quantization is not None:
                rows.append(compare_words(backend, probs, ref, spec, f"int8-{runtime.quantization['method']}",
                                          max_word_disagreement))
                continue
            if runtime.precision == "bf16":
                rows.append(compare_words(backend, probs, ref, spec, "bf16", BF16_MAX_WORD_DISAGREEMENT))
                continue
            if runtime.stops_early:  # steps after the reference's STOP are not computed: compare up to it
                probs = np.where(after_stop(ref_ids)[..., None], ref, probs)
            tf = teacher_forced(runtime, batch, ref_ids)
            rows.append(compare(backend, probs, ref, spec, tolerance, tf, tf_ref if tf is not None else None))
        results[name] = rows
    return ParityReport(config=spec.name, inputs={k: len(v) for k, v in input_sets.items()}, tolerance=tolerance,
                        max_word_disagreement=max_word_disagreement, results=results, unavailable=unavailable)


def artifact_for(backend: str, spec: ModelSpec, weights, workdir: Path) -> Optional[Path]:
    """Export the artifact an artifact runtime loads; framework runtimes take the weights directly."""
    from .api import build_model

    if backend in ONNX_BACKENDS:
        from exporters.onnx_export import export_onnx
        return export_onnx(build_model(spec, "torch", weights=weights), workdir / f"{spec.name}.onnx").path
    if backend == "mindir":
        from exporters.mindir_export import export_mindir
        return export_mindir(build_model(spec, "mindspore", weights=weights), workdir / f"{spec.name}.mindir",
                             batch=None).path
    if backend == "mslite":
        from .mslite_bridge import LiteUnavailable, availability
        reason = availability()
        if reason:
            raise LiteUnavailable(reason)
        from exporters.mslite_export import export_mslite
        return export_mslite(build_model(spec, "torch", weights=weights), workdir / f"{spec.name}.ms").path
    return None


def format_report(report: ParityReport) -> str:
    rows_all = [r for rows in report.results.values() for r in rows]
    classes = f"fp32 tolerance {report.tolerance:.1e}"
    if any(r.tolerance_class.startswith("int8") for r in rows_all):
        classes += f"; int8: at most {report.max_word_disagreement:.1%} of words may differ, probabilities unbounded"
    if any(r.tolerance_class == "bf16" for r in rows_all):
        classes += f"; bf16: at most {BF16_MAX_WORD_DISAGREEMENT:.1%} of words may differ"
    lines = [f"parity of {report.config} against {REFERENCE} ({classes})"]
    width = max([16] + [len(r.backend) + 2 for r in rows_all])
    header = (f"{'runtime':<{width}}{'class':<13}{'max|Δ|':>10}{'aligned':>10}{'teacher-f.':>11}{'ids':>5}{'text':>6}"
              f"{'ties':>6}  verdict")
    for name, rows in report.results.items():
        lines += ["", f"{name} ({report.inputs[name]} images)", header]
        for r in rows:
            tf = "n/a" if r.teacher_forced_max_abs_diff is None else f"{r.teacher_forced_max_abs_diff:.1e}"
            verdict = "ok" if r.ok else "FAIL: " + "; ".join(r.violations[:3])
            if r.word_disagreement is not None and r.ok:
                verdict += (f": {len(r.words_differing)} of {report.inputs[name]} words differ "
                            f"({r.word_disagreement:.1%} <= {r.max_word_disagreement:.1%})")
            lines.append(f"{r.backend:<{width}}{r.tolerance_class:<13}{r.max_abs_diff:>10.1e}"
                         f"{r.aligned_max_abs_diff:>10.1e}{tf:>11}{'=' if r.ids_identical else '≠':>5}"
                         f"{'=' if r.strings_identical else '≠':>6}{len(r.near_ties):>6}  {verdict}")
    for backend, why in report.unavailable.items():
        lines.append(f"not run: {backend}: {why}")
    lines.append("")
    lines.append("PARITY OK" if report.ok else "PARITY VIOLATED")
    return "\n".join(lines)
