"""Peer comparison: our RARE beside MindOCR's own rare_resnet34 and RapidOCR's PP-OCRv4 recognizer, same machine.

    python -m benchmarks.peers [--quick] [--weights CKPT] [--words 300] [--seed 3] [--json FILE]

1. MindOCR 0.5.0 `rare_resnet34`, built by MindOCR's own builder (`mindocr.models.build_model`, random
   weights), on the same MindSpore 2.8 and CPU, batch 32:
   a. eval img/s: MindOCR PyNative and graph mode (built with amp_level "O0", as MindOCR's tools/eval.py does;
      built without it, as `build_model("rare_resnet34")` alone, its graph mode fails to compile on MindSpore
      >= 2.3 and the error is recorded) beside ours (`runtimes` "mindspore-graph"; PyNative too, for context,
      not in --quick);
   b. train step img/s: MindOCR's step as its tools/train.py assembles it (AttentionLoss, NetWithLossWrapper,
      create_group_params + create_optimizer adamw, warmup-cosine lr, dynamic loss scale 512,
      TrainOneStepWrapper) in graph mode (system.mode 0, jit_level O2) at each --mindocr-amp level: O2, the
      config's (float16 on the CPU, MindOCR's own figure of 5.4 img/s), and O0 (float32 like ours, faster
      here); PyNative at the first level (not in --quick); beside our compiled TrainStep on the same
      config's settings. Same batch for both (random images, random words).
2. RapidOCR 1.4.4's recognizer (`rapidocr_onnxruntime.ch_ppocr_rec.TextRecognizer`, its PP-OCRv4 ONNX model
   and its own preprocessing and CTC decoding) at batch 1 on --words words rendered by rare_portable's
   synthesizer (lower-case plan, height 32, --seed), beside our ONNX Runtime rare_tiny (--weights, a trained
   checkpoint; default runs/train_tiny/run/best.ckpt) and rare_resnet34 (seeded weights, speed only) at
   batch 1 and 32. img/s counts each side's own preprocessing and decoding. Word accuracy is
   case-insensitive: both texts lower-cased, every character outside [0-9a-z] dropped, then compared whole.
3. The same PP-OCRv4 recognizer beside the shipped model (`rare_small_en`, exported to ONNX Runtime, batch 1
   and 32) on the real held-out words (--real: the LMDBs `rare lmdb split` makes, rare_small_en.md), the
   same words for both: accuracy per split by that rule (MindOCR's metric) and img/s.

Each part runs in its own process. Inside one, the runtimes are timed in alternating rounds and each keeps
its best round, so a burst of load from another job hits all of them alike: the ratios are the figures to
read on a shared machine; absolute img/s move with the load (the load average is recorded).

MindOCR and RapidOCR are installed without their dependencies (both pin old or conflicting packages:
Pillow<=9.5, shapely 1.8, opencv-python beside our opencv-python-headless):
    pip install --no-deps mindocr==0.5.0 rapidocr-onnxruntime==1.4.4   (tox -e bench does it)
plus the few imports they need, in the `bench` extra. `import mindocr` itself fails on MindSpore 2.8
(its package __init__ pulls every data pipeline and model, and ABINet's layers import
mindspore.parallel._transformer, gone in 2.x): the model builder is imported without the top-level
__init__, with that one ABINet module replaced by a placeholder. Without the package, MindOCR's source is
taken from a local git mirror (--mindocr-mirror) into a temporary folder. A peer that cannot be imported
is reported as not run, with the reason; the benchmark still writes its results.
Writes benchmarks/results/peers.json.
"""
from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_WEIGHTS = ROOT / "runs" / "train_tiny" / "run" / "best.ckpt"
DEFAULT_MIRROR = Path("/work/.mirror/mindspore-lab+mindocr/repo")
INSTALL_HINT = "pip install --no-deps mindocr==0.5.0 rapidocr-onnxruntime==1.4.4 and pip install -e .[bench]"
# Figures the goals are stated against (issue 6: MindOCR measured on this machine before).
MINDOCR_EVAL_REFERENCE, EVAL_GOAL = 13.6, 3.0
MINDOCR_TRAIN_REFERENCE, TRAIN_GOAL = 5.4, 2.0
BATCH = 32
MINDOCR_UNIMPORTABLE = "mindocr.models.utils.abinet_layers"  # imports mindspore.parallel._transformer


# ---------------------------------------------------------------------------------------------- helpers


def versions(*names) -> dict:
    from importlib import metadata
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def best_rounds(contenders: dict, rounds: int, timed: int, warmup: int = 1) -> dict:
    """contenders: name -> callable doing one unit of work and returning how many images it did.
    Every contender is warmed up (compilation) first, then timed in `rounds` alternating rounds of `timed`
    calls; img/s of its best round. A contender that raises is dropped and its error kept."""
    speeds, errors = {}, {}
    live = dict(contenders)
    for name, work in list(live.items()):
        try:
            started = time.perf_counter()
            for _ in range(warmup):
                work()
            print(f"  {name}: warm-up {time.perf_counter() - started:.1f} s", flush=True)
        except Exception as e:  # a peer that does not compile or run here: recorded, not fatal
            errors[name] = first_line(e)
            print(f"  {name}: failed: {errors[name]}", flush=True)
            del live[name]
    for round_index in range(rounds):
        for name, work in live.items():
            started, images = time.perf_counter(), 0
            for _ in range(timed):
                images += work()
            ips = images / (time.perf_counter() - started)
            speeds[name] = max(speeds.get(name, 0.0), ips)
            print(f"  round {round_index + 1} {name}: {ips:.2f} img/s", flush=True)
    return {"img_per_s": {k: round(v, 3) for k, v in speeds.items()}, "errors": errors}


def run_child(part: str, args, extra=()) -> dict:
    """One part in its own process (MindSpore's mode and memory are per process); its last stdout line is JSON."""
    env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "3"), PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "benchmarks.peers", "--child", part, *extra] + (["--quick"] if args.quick else [])
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        proc = subprocess.run(command + ["--json", out.name], cwd=ROOT, env=env, stdout=None, stderr=subprocess.PIPE,
                              text=True)
        text = Path(out.name).read_text()
    result = json.loads(text) if text.strip() else {}
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.splitlines() if line.strip() and "Cell.__del__" not in line][-3:]
        result.setdefault("errors", {})["process"] = f"exit {proc.returncode}: {' | '.join(tail)}"
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["load_average_before"] = [round(x, 2) for x in load_before]
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


# ---------------------------------------------------------------------------------------------- MindOCR


class _ShallowMindOCR:
    """Import hook: `mindocr` as a package whose __init__ is not run, and a placeholder for the one module that
    cannot be imported on MindSpore 2.x (ABINet's layers; nothing RARE uses)."""

    def __init__(self, source_dir: Path):
        self.package_dir = source_dir / "mindocr"

    def find_spec(self, name, path=None, target=None):
        if name == "mindocr":
            spec = importlib.machinery.ModuleSpec(name, self, is_package=True)
            spec.submodule_search_locations = [str(self.package_dir)]
            return spec
        if name == MINDOCR_UNIMPORTABLE:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ == MINDOCR_UNIMPORTABLE:
            def placeholder(attribute):
                if attribute.startswith("__"):
                    raise AttributeError(attribute)
                return type(attribute, (), {"__doc__": "placeholder: ABINet needs MindSpore 1.x/2.2"})
            module.__getattr__ = placeholder


def mindocr_source(mirror: Path, workdir: Path) -> tuple:
    """(folder holding mindocr/, description): the installed package, else the mirror's HEAD extracted."""
    spec = importlib.util.find_spec("mindocr")  # finds without importing
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]).parent, f"mindocr {versions('mindocr')['mindocr']} (PyPI)"
    if not (mirror / "HEAD").is_file():
        raise ImportError(f"mindocr is not installed and no mirror at {mirror}: {INSTALL_HINT}")
    head = subprocess.run(["git", "--git-dir", str(mirror), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    archive = subprocess.run(["git", "--git-dir", str(mirror), "archive", "HEAD", "mindocr"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive, check=True)
    return workdir, f"mindspore-lab/mindocr@{head[:10]} (mirror)"


def plain_import_error(source: Path) -> str:
    """What `import mindocr` says here (in a child, so its half-imported modules stay out of this process)."""
    code = "import mindocr"
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=str(source))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir())
    if proc.returncode == 0:
        return "imports"
    errors = [line for line in proc.stderr.splitlines() if re.match(r"^\w+(Error|Exception)\b", line)]
    return errors[-1] if errors else proc.stderr.strip().splitlines()[-1]


def import_mindocr(args, workdir: Path) -> dict:
    source, origin = mindocr_source(Path(args.mindocr_mirror), workdir)
    how = {"source": origin, "plain_import_mindocr": plain_import_error(source),
           "imported_as": "mindocr.models / losses / optim / scheduler / utils without mindocr/__init__.py; "
                          f"{MINDOCR_UNIMPORTABLE} replaced by a placeholder"}
    sys.meta_path.insert(0, _ShallowMindOCR(source))
    if str(source) not in sys.path:
        sys.path.append(str(source))
    return how


def random_batch(size: int):
    from benchmarks.train_step import batch
    from rare_portable import load_config
    return batch(load_config("rare_resnet34").spec, size)  # images [N,3,32,100], targets [N,27] (GO ... STOP)


def in_mode(mode: int, jit_level: str, call):
    """Run `call` under a MindSpore execution mode (and graph jit_level), then restore the caller's."""
    import mindspore as ms

    def run(*inputs):
        saved_mode, saved_jit = ms.get_context("mode"), ms.get_context("jit_config")
        ms.set_context(mode=mode, jit_config={"jit_level": jit_level})
        try:
            return call(*inputs)
        finally:
            ms.set_context(mode=saved_mode, jit_config=saved_jit or {"jit_level": "O0"})
    return run


def child_mindocr_eval(args) -> dict:
    import mindspore as ms

    from runtimes import open_runtime

    ms.set_device("CPU")
    with tempfile.TemporaryDirectory(prefix="peers-mindocr-") as tmp:
        how = import_mindocr(args, Path(tmp))
        from mindocr.models import build_model as mindocr_build

        images = ms.Tensor(random_batch(BATCH)[0])
        x = images.asnumpy()
        # tools/eval.py: build_model(cfg.model, amp_level=cfg.system.get("amp_level_infer", "O0")); mode 0 + O2.
        theirs = mindocr_build("rare_resnet34", pretrained=False, amp_level="O0")
        theirs.set_train(False)
        bare = mindocr_build("rare_resnet34", pretrained=False)  # the API example: no amp_level
        bare.set_train(False)
        ours_graph = open_runtime("mindspore-graph", "rare_resnet34")
        backbone = ours_graph.net.backbone
        ours_pynative = None if args.quick else open_runtime("mindspore", "rare_resnet34")

        def timed(fn):
            def work():
                fn()
                return BATCH
            return work

        contenders = {
            "mindocr_pynative": timed(in_mode(ms.PYNATIVE_MODE, "O0", lambda: theirs(images).asnumpy())),
            "mindocr_graph": timed(in_mode(ms.GRAPH_MODE, "O2", lambda: theirs(images).asnumpy())),
            "mindocr_graph_without_amp_level": timed(in_mode(ms.GRAPH_MODE, "O2", lambda: bare(images).asnumpy())),
            "ours_graph": timed(lambda: ours_graph.predict(x)),
            # The convolutions alone, compiled: what MindSpore's Conv2d allows the whole network at best.
            "ours_backbone_only_graph": timed(in_mode(ms.GRAPH_MODE, "O0", lambda: backbone(images).asnumpy())),
        }
        if not args.quick:
            contenders["ours_pynative"] = timed(lambda: ours_pynative.predict(x))
        rounds, timed_calls = (1, 1) if args.quick else (2, 2)
        result = best_rounds(contenders, rounds, timed_calls)
    ratios = ours_over(result["img_per_s"], "ours_graph", ("mindocr_pynative", "mindocr_graph"),
                       MINDOCR_EVAL_REFERENCE)
    ratios.update(ours_over(result["img_per_s"], "ours_backbone_only_graph", ("mindocr_pynative",),
                            MINDOCR_EVAL_REFERENCE))
    return {"batch": BATCH, "mindocr": how, **result, "ratios": ratios,
            "notes": "ours_backbone_only_graph: the backbone alone, an upper bound for any MindSpore network "
                     "with these convolutions; mindocr_graph: built with amp_level='O0' as tools/eval.py does (its RNNEncoder runs the LSTM in "
                     "float16 on MindSpore >= 2.3 and casts back only when _amp_level is 'O0'); "
                     "mindocr_graph_without_amp_level: build_model('rare_resnet34') alone"}


def child_train(args) -> dict:
    import mindspore as ms

    ms.set_device("CPU")
    with tempfile.TemporaryDirectory(prefix="peers-mindocr-") as tmp:
        how = import_mindocr(args, Path(tmp))
        images_np, targets_np = random_batch(BATCH)
        images, targets = ms.Tensor(images_np), ms.Tensor(targets_np)
        contenders = {}
        modes = [(f"mindocr_graph_{amp}", ms.GRAPH_MODE, "O2", amp) for amp in args.mindocr_amp]
        if not args.quick:
            modes.append((f"mindocr_pynative_{args.mindocr_amp[0]}", ms.PYNATIVE_MODE, "O0", args.mindocr_amp[0]))
        for name, mode, jit_level, amp in modes:
            step = mindocr_train_step(amp)
            run_step = in_mode(mode, jit_level, lambda step=step: step(images, targets)[0].asnumpy())
            contenders[name] = _train_work(run_step)
        ours, lr = our_train_step()
        attention_weight = ms.Tensor(np.float32(1.0))  # MindOCR's objective
        contenders["ours_trainstep"] = _train_work(lambda: ours(images, targets, lr, attention_weight)[0].asnumpy())
        rounds, timed_calls = (1, 1) if args.quick else (2, 2)
        result = best_rounds(contenders, rounds, timed_calls)
    ratios = ours_over(result["img_per_s"], "ours_trainstep", [name for name, *_ in modes], MINDOCR_TRAIN_REFERENCE)
    return {"batch": BATCH, "mindocr": how, "mindocr_amp_levels": args.mindocr_amp, **result, "ratios": ratios}


def ours_over(ips: dict, ours: str, peers, reference: float) -> dict:
    """`ours`'s img/s over each peer that ran, and over the figure the goal was stated against."""
    if ours not in ips:
        return {}
    ratios = {f"{ours}_over_{peer}": round(ips[ours] / ips[peer], 3) for peer in peers if peer in ips}
    ratios[f"{ours}_over_reference_{reference:g}"] = round(ips[ours] / reference, 3)
    return ratios


def _train_work(step):
    def work():
        step()
        return BATCH
    return work


def mindocr_train_step(amp_level: str):
    """MindOCR's tools/train.py, with configs/rec/rare/rare_resnet34.yaml's values (amp level aside)."""
    from addict import Dict
    from mindocr.losses import build_loss
    from mindocr.models import build_model
    from mindocr.optim import create_group_params, create_optimizer
    from mindocr.scheduler import create_scheduler
    from mindocr.utils.loss_scaler import get_loss_scales
    from mindocr.utils.model_wrapper import NetWithLossWrapper
    from mindocr.utils.train_step_wrapper import TrainOneStepWrapper

    cfg = Dict({"loss_scaler": {"type": "dynamic", "loss_scale": 512, "scale_factor": 2.0, "scale_window": 1000},
                "train": {}})
    network = build_model("rare_resnet34", pretrained=False, amp_level=amp_level)
    net_with_loss = NetWithLossWrapper(network, build_loss("AttentionLoss"), input_indices=[0, 1], label_indices=[1],
                                       pred_cast_fp32=amp_level != "O0")
    loss_scale_manager, optimizer_loss_scale = get_loss_scales(cfg)
    lr = create_scheduler(100, scheduler="warmup_cosine_decay", lr=5e-4, min_lr=0.0, num_epochs=30, warmup_epochs=1,
                          decay_epochs=29)
    optimizer_cfg = {"opt": "adamw", "filter_bias_and_bn": True, "weight_decay": 0.05}
    params = create_group_params(network.trainable_params(), **optimizer_cfg)
    optimizer = create_optimizer(params, lr=lr, loss_scale=optimizer_loss_scale, **optimizer_cfg)
    step = TrainOneStepWrapper(net_with_loss, optimizer=optimizer, scale_sense=loss_scale_manager,
                               drop_overflow_update=True, clip_grad=False, clip_norm=1.0, ema=None)
    step.set_train(True)
    return step


def our_train_step():
    """Our trainer's compiled TrainStep on configs/rare_resnet34.yaml's settings (as benchmarks/train_step.py)."""
    import mindspore as ms

    from rare_portable import build_model, load_config
    from rare_portable.train import read_settings
    from rare_portable.train.optim import build_loss_scaler, build_optimizer
    from rare_portable.train.step import TrainStep, compiled

    config = load_config("rare_resnet34")
    settings = read_settings(config, [])
    net = build_model(config, "mindspore", train=True)
    optimizer = build_optimizer(net.trainable_params(), settings.optimizer, settings.schedule.lr)
    step = compiled(TrainStep(net, optimizer, build_loss_scaler(settings.loss_scale), settings.clip_norm),
                    graph_mode=True)
    return step, ms.Tensor(np.float32(settings.schedule.lr))


# ---------------------------------------------------------------------------------------------- RapidOCR


def normalise(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def right_words(predicted, labels) -> list:
    """Per word, whether it was read (the accuracy rule below)."""
    return [normalise(p) == normalise(t) for p, t in zip(predicted, labels)]


def word_accuracy(predicted, labels) -> float:
    return sum(right_words(predicted, labels)) / len(labels)


def read_by_either(first: list, second: list) -> dict:
    """How two recognizers' right words (`right_words`) overlap: what one reads and the other does not says how
    far apart they are, and the words neither reads bound what either could learn from the other."""
    pairs = list(zip(first, second))
    return {"words": len(pairs), "both": sum(a and b for a, b in pairs), "first_only": sum(a and not b for a, b in pairs),
            "second_only": sum(b and not a for a, b in pairs), "neither": sum(not (a or b) for a, b in pairs),
            "either": round(sum(a or b for a, b in pairs) / len(pairs), 4)}


def render_words(count: int, seed: int):
    from rare_portable.data.synth import WordRenderer, make_plan
    renderer = WordRenderer(make_plan(seed=seed))
    samples = [renderer.render(i) for i in range(count)]
    return [image for image, _ in samples], [label for _, label in samples]


def rapidocr_recognizer():
    import yaml
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None:
        raise ImportError(f"rapidocr_onnxruntime is not installed: {INSTALL_HINT}")
    package = Path(list(spec.submodule_search_locations)[0])
    from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer

    config = yaml.safe_load((package / "config.yaml").read_text())["Rec"]
    config["model_path"] = str(package / config["model_path"])
    return TextRecognizer(config), Path(config["model_path"]).name


def whole_pass(predictions: dict, name: str, count: int, recognise, batch_size: int):
    """A `best_rounds` contender: `recognise(start, stop)` over `count` images in batches, its texts kept."""
    def work():
        predictions[name] = [text for start in range(0, count, batch_size)
                             for text in recognise(start, start + batch_size)]
        return count
    return work


def add_rapidocr(contenders: dict, predictions: dict, errors: dict, bgr) -> str:
    """PP-OCRv4 at batch 1 as a contender (or its import error kept); the model file's name."""
    try:
        recognizer, model_name = rapidocr_recognizer()
    except Exception as e:
        errors["rapidocr_ppocrv4"] = first_line(e)
        return ""
    contenders["rapidocr_ppocrv4_b1"] = whole_pass(
        predictions, "rapidocr_ppocrv4_b1", len(bgr), lambda a, b: [text for text, _ in recognizer(bgr[a:b])[0]], 1)
    return model_name


def over_rapidocr(ips: dict) -> dict:
    return {f"{name}_over_rapidocr_b1": round(ips[name] / ips["rapidocr_ppocrv4_b1"], 3)
            for name in ips if name.startswith("ours") and "rapidocr_ppocrv4_b1" in ips}


def child_rapidocr(args) -> dict:
    import cv2

    from rare_portable import load_config
    from rare_portable.parity import artifact_for
    from runtimes import open_runtime

    images, labels = render_words(args.words, args.seed)
    bgr = [cv2.cvtColor(image, cv2.COLOR_RGB2BGR) for image in images]  # RapidOCR reads images as OpenCV does
    predictions, contenders, errors, notes = {}, {}, {}, {}
    model_name = add_rapidocr(contenders, predictions, errors, bgr)
    if model_name:
        notes["rapidocr"] = f"rapidocr_onnxruntime {versions('rapidocr_onnxruntime')['rapidocr_onnxruntime']}, " \
                            f"{model_name}, TextRecognizer's own resize/normalise and CTC decoding"

    weights = Path(args.weights) if args.weights else None
    trained = weights is not None and weights.is_file()
    if weights is not None and not trained:
        notes["rare_tiny"] = f"{weights} not found: seeded weights, accuracy not measured"
    with tempfile.TemporaryDirectory(prefix="peers-onnx-") as tmp:
        from rare_portable import build_model, save_weights
        for config in ("rare_tiny", "rare_resnet34"):
            spec = load_config(config).spec
            source = weights if (config == "rare_tiny" and trained) else \
                save_weights(build_model(spec, "torch", seed=0), Path(tmp) / f"{config}.safetensors")
            runtime = open_runtime("onnxruntime", None, artifact_for("onnxruntime", spec, source, Path(tmp)))
            for batch_size in (1, 32):
                name = f"ours_{config}_b{batch_size}"
                contenders[name] = whole_pass(
                    predictions, name, len(images),
                    lambda a, b, rt=runtime: [text for text, _ in rt.recognise(images[a:b], lower=True)], batch_size)
        rounds = 1 if args.quick else 2
        result = best_rounds(contenders, rounds, 1)
    result["errors"].update(errors)
    accuracy = {}
    for name, predicted in predictions.items():
        if name.startswith("rapidocr") or (name.startswith("ours_rare_tiny") and trained):
            accuracy[name] = round(word_accuracy(predicted, labels), 4)
    ratios = over_rapidocr(result["img_per_s"])
    mistakes = {name: [(t, p) for t, p in zip(labels, predicted) if normalise(t) != normalise(p)][:10]
                for name, predicted in predictions.items() if name in accuracy}
    return {"words": args.words, "seed": args.seed, "render": "rare_portable.data.synth make_plan(seed), lower case, "
            "height 32, RGB (BGR for RapidOCR)", "weights": str(weights) if trained else None, **result,
            "word_accuracy": accuracy, "ratios": ratios, "first_mistakes": mistakes,
            "accuracy_rule": "case-insensitive: lower-cased, characters outside [0-9a-z] dropped, whole word equal",
            "notes": notes}


def real_sets(root: Path):
    """(dataset name, RGB images, labels) for every LMDB under `root`."""
    from rare_portable.data.datasets import find_datasets

    sets = []
    for dataset in find_datasets([root]):
        source = dataset.open()
        try:
            samples = [(sample.image, sample.label) for sample in source if sample.skip is None]
        finally:
            getattr(source, "close", lambda: None)()
        sets.append((dataset.name, [image for image, _ in samples], [label for _, label in samples]))
    return sets


def child_real(args) -> dict:
    """PP-OCRv4 beside the shipped model on the same real held-out words: accuracy per split and img/s."""
    import cv2

    from rare_portable.parity import artifact_for
    from rare_portable.pretrained import DEFAULT_MODEL, pretrained_config, pretrained_weights
    from rare_portable import load_config
    from runtimes import open_runtime

    root = Path(args.real)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no real held-out words; make them as rare_portable/pretrained/"
                                f"{DEFAULT_MODEL}.md says (rare lmdb split ../shared/real_validation/...)")
    sets = real_sets(root)
    images = [image for _, part, _ in sets for image in part]
    labels = [label for _, _, part in sets for label in part]
    bgr = [cv2.cvtColor(image, cv2.COLOR_RGB2BGR) for image in images]
    predictions, contenders, errors = {}, {}, {}
    add_rapidocr(contenders, predictions, errors, bgr)
    spec = load_config(pretrained_config(DEFAULT_MODEL)).spec
    with tempfile.TemporaryDirectory(prefix="peers-real-") as tmp:
        runtime = open_runtime("onnxruntime", None,
                               artifact_for("onnxruntime", spec, pretrained_weights(DEFAULT_MODEL), Path(tmp)))
        for batch_size in (1, 32):
            name = f"ours_{DEFAULT_MODEL}_b{batch_size}"
            contenders[name] = whole_pass(
                predictions, name, len(images),
                lambda a, b, rt=runtime: [text for text, _ in rt.recognise(images[a:b], lower=True)], batch_size)
        result = best_rounds(contenders, 1 if args.quick else 2, 1, warmup=0)
    result["errors"].update(errors)
    right = {name: right_words(predicted, labels) for name, predicted in predictions.items()}
    ours, peer = f"ours_{DEFAULT_MODEL}_b1", "rapidocr_ppocrv4_b1"
    accuracy, overlap, start = {name: {} for name in right}, {}, 0
    for split, part, _ in sets:
        words = slice(start, start + len(part))
        start = words.stop
        for name, marks in right.items():
            accuracy[name][split] = round(sum(marks[words]) / len(part), 4)
        if ours in right and peer in right:
            overlap[split] = read_by_either(right[ours][words], right[peer][words])
    for per_split in accuracy.values():
        per_split["mean"] = round(sum(per_split.values()) / len(per_split), 4)
    ratios = over_rapidocr(result["img_per_s"])
    return {"data": str(root), "words": {split: len(part) for split, part, _ in sets}, **result,
            "word_accuracy": accuracy, "ratios": ratios,
            "right_words_overlap": {"first": ours, "second": peer, "splits": overlap},
            "accuracy_rule": "case-insensitive: lower-cased, characters outside [0-9a-z] dropped, whole word equal "
                             "(MindOCR's metric)", "runtime": "ours: ONNX Runtime, exported from the shipped weights"}


# ---------------------------------------------------------------------------------------------- main


CHILDREN = {"mindocr-eval": child_mindocr_eval, "train": child_train, "rapidocr": child_rapidocr,
            "real": child_real}


def summary_lines(report: dict):
    ev, tr, rp = report.get("mindocr_eval", {}), report.get("train_step", {}), report.get("rapidocr", {})
    real = report.get("real_holdout", {})
    lines = [f"machine: {machine.summary(report['machine'])} at start (shared machine: absolute img/s vary)"]
    for title, part in (("eval, batch 32", ev), ("train step, batch 32", tr), ("recognizers on rendered words", rp),
                        ("recognizers on the real held-out words (mean of the splits)", real)):
        lines.append(f"\n{title}:")
        for name, ips in part.get("img_per_s", {}).items():
            acc = part.get("word_accuracy", {}).get(name)
            acc = acc["mean"] if isinstance(acc, dict) else acc
            lines.append(f"  {name:<36}{ips:>9.2f} img/s" + (f"   word acc {acc:.1%}" if acc is not None else ""))
        for name, why in part.get("errors", {}).items():
            lines.append(f"  {name:<36} not run: {why}")
        for name, ratio in part.get("ratios", {}).items():
            lines.append(f"  {name:<52}{ratio:>7.2f}x")
    for split, counts in real.get("right_words_overlap", {}).get("splits", {}).items():
        lines.append(f"  {split}: read by both {counts['both']}, only ours {counts['first_only']}, only "
                     f"PP-OCRv4 {counts['second_only']}, neither {counts['neither']} (either {counts['either']:.1%})")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps, 100 words")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="trained rare_tiny checkpoint for accuracy")
    parser.add_argument("--words", type=int, help="rendered words for the recognizers (default 300, quick 100)")
    parser.add_argument("--seed", type=int, default=3, help="synth seed of the words (train_tiny uses 1 and 2)")
    parser.add_argument("--mindocr-amp", nargs="+", default=["O2", "O0"], choices=["O0", "O1", "O2", "O3"],
                        help="amp_level(s) of MindOCR's train step: its config says O2 (float16, slower on a CPU)")
    parser.add_argument("--mindocr-mirror", default=str(DEFAULT_MIRROR),
                        help="bare git mirror of mindspore-lab/mindocr, used when the package is not installed")
    parser.add_argument("--parts", nargs="+", default=list(CHILDREN), choices=list(CHILDREN))
    parser.add_argument("--real", default=str(ROOT / "data" / "real" / "holdout"),
                        help="real held-out LMDBs for the `real` part (rare lmdb split, as rare_small_en.md says)")
    parser.add_argument("--json", default=str(RESULTS / "peers.json"))
    parser.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.words is None:
        args.words = 100 if args.quick else 300
    if args.child:
        try:
            result = CHILDREN[args.child](args)
        except Exception as e:  # e.g. a peer that cannot be imported: say why, keep the other parts
            result = {"errors": {"part": first_line(e)}}
        Path(args.json).write_text(json.dumps(result, indent=1))
        return result

    report = {"machine": machine.describe(), "quick": args.quick,
              "versions": versions("mindspore", "onnxruntime", "torch", "numpy", "mindocr", "rapidocr-onnxruntime"),
              "goals": {"eval_ours_graph_vs_mindocr": f">= {EVAL_GOAL}x MindOCR's {MINDOCR_EVAL_REFERENCE} img/s",
                        "train_ours_vs_mindocr": f">= {TRAIN_GOAL}x MindOCR's {MINDOCR_TRAIN_REFERENCE} img/s"}}
    shared = ["--seed", str(args.seed), "--words", str(args.words), "--mindocr-amp", *args.mindocr_amp,
              "--mindocr-mirror", args.mindocr_mirror, "--weights", args.weights, "--real", args.real]
    for part, key in (("mindocr-eval", "mindocr_eval"), ("train", "train_step"), ("rapidocr", "rapidocr"),
                      ("real", "real_holdout")):
        if part in args.parts:
            print(f"\n--- {part}", flush=True)
            report[key] = run_child(part, args, shared)
    machine.finish(report["machine"])
    print("\n" + "\n".join(summary_lines(report)))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
