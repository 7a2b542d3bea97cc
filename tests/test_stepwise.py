"""`rare export --decoder stepwise`: ONNX Runtime loops an encoder and a one-step graph until every word has
emitted STOP. Probabilities up to each word's STOP equal the unrolled graph's, the words are the same, the
loop really stops early (a trained model: the shipped one), and `rare parity` checks the pair."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import rare_portable  # noqa: F401  (before onnx: it picks the protobuf backend MindSpore needs)
from rare_portable.artifact import ArtifactError
from rare_portable.cli import cli
from rare_portable.config import load_config
from rare_portable.data.preprocess import batch
from rare_portable.data.synth import render_words
from rare_portable.labels import decode
from rare_portable.parity import FP32_TOLERANCE, after_stop
from rare_portable.tolerances import FP32_RUNTIME, assert_within
from runtimes import open_runtime


def rare(*args):
    return CliRunner(mix_stderr=False).invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stepwise")
    for name, extra in (("unrolled.onnx", []), ("stepwise.onnx", ["--decoder", "stepwise"])):
        result = rare("export", "-w", "rare_small_en", "--format", "onnx", "-o", folder / name, *extra)
        assert result.exit_code == 0, result.output + result.stderr
    return folder


class CountingSession:
    def __init__(self, session):
        self.session, self.calls = session, 0

    def run(self, *args):
        self.calls += 1
        return self.session.run(*args)


def test_equal_to_the_unrolled_graph_up_to_stop_and_stops_early(exported):
    spec = load_config("rare_small_en").spec
    images, _ = render_words(spec, 24, 77)
    x = batch(images, spec.input)
    unrolled = open_runtime("onnxruntime", None, exported / "unrolled.onnx").predict(x)
    stepwise = open_runtime("onnxruntime", None, exported / "stepwise.onnx")
    assert (exported / "stepwise.step.onnx").is_file() and stepwise.stops_early
    stepwise.step_session = counting = CountingSession(stepwise.step_session)
    probs = stepwise.predict(x)
    ids = unrolled.argmax(-1)
    upto = ~after_stop(ids)
    diff = np.abs(probs - unrolled)[upto].max()
    assert_within(diff, FP32_RUNTIME, "stepwise vs unrolled up to STOP")
    assert (probs.argmax(-1) == ids)[upto].all()
    read, reference = decode(probs, spec.charset), decode(unrolled, spec.charset)
    assert [t for t, _ in read] == [t for t, _ in reference]
    assert np.allclose([c for _, c in read], [c for _, c in reference], atol=FP32_TOLERANCE)
    longest = int(upto.sum(1).max())  # steps up to and including the last word's STOP
    assert counting.calls == longest < spec.head.num_steps


def test_parity_checks_the_stepwise_pair(exported, tmp_path):
    result = rare("parity", "-w", "rare_small_en", "--backend", "torch", "--artifact", exported / "stepwise.onnx",
                  "--words", 16, "--json", tmp_path / "parity.json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads((tmp_path / "parity.json").read_text())
    (row,) = [r for rows in report["results"].values() for r in rows]
    assert report["ok"] and row["strings_identical"] and row["aligned_max_abs_diff"] < FP32_TOLERANCE


def test_a_missing_step_file_and_a_stepwise_int8_are_refused(exported, tmp_path):
    lonely = tmp_path / "alone.onnx"
    lonely.write_bytes((exported / "stepwise.onnx").read_bytes())
    with pytest.raises(ArtifactError, match=r"its step graph .*stepwise.step.onnx is missing; keep the two files"):
        open_runtime("onnxruntime", None, lonely)
    result = rare("export", "-w", "rare_small_en", "--format", "onnx", "--decoder", "stepwise", "--int8", "dynamic",
                  "-o", tmp_path / "q.onnx")
    assert result.exit_code != 0 and "--decoder stepwise is for a plain fp32" in result.stderr
    assert not (tmp_path / "q.onnx").exists()
