"""What an exported artifact carries, and how to read it: the one module exporters (which write it) and
runtimes (which read it) share, so neither imports the other.

Every artifact carries the spec, so a runtime needs nothing else: ONNX in its metadata_props (with the
int8 record and the stepwise decoder's step file), MindIR in its `user_info` map (with a sidecar for files
from other exporters), MindSpore Lite in a `<file>.json` sidecar.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

from . import __version__, files
from .errors import UserError
from .spec import ModelSpec, spec_from_dict, spec_to_dict

# ONNX: graph input/output names and the metadata_props keys.
INPUT_NAME, OUTPUT_NAME = "images", "probs"
SPEC_KEY, FLAVOUR_KEY, VERSION_KEY = "rare_portable.spec", "rare_portable.flavour", "rare_portable.version"
INT8_KEY = "rare_portable.int8"  # JSON saying how the model was quantized
STEP_KEY = "rare_portable.step_file"  # the stepwise decoder's step graph, beside the encoder file
# MindIR: the user_info entry holding the export record (spec included).
USER_INFO_KEY = "rare_portable"
# Graph plumbing every MindIR has; the converter resolves it, it is not an operator to support.
STRUCTURAL = {"Constant", "Load", "TupleGetItem", "MakeTuple", "make_list", "make_tuple", "UpdateState", "Depend",
              "Return", "return"}


class ArtifactError(UserError, RuntimeError):
    """An artifact that cannot be used as asked; the message names the file and expected vs actual."""


def output_folder(output: Path) -> Path:
    """The folder `output` goes into, created if needed; one that cannot be made or written to is an
    ArtifactError naming it, raised before anything is exported."""
    return files.output_folder(output, ArtifactError)


def sidecar_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def write_sidecar(artifact: Path, spec: ModelSpec, **extra) -> Path:
    """`<artifact>.json` beside formats with no metadata of their own (MindIR, Lite)."""
    path = sidecar_path(artifact)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"spec": spec_to_dict(spec), "rare_portable": __version__, **extra},
                              ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_sidecar(artifact: Path) -> dict:
    path = sidecar_path(artifact)
    if not artifact.is_file():
        raise ArtifactError(f"{artifact}: no such file")
    if not path.is_file():
        raise ArtifactError(f"{artifact}: its spec file {path.name} is missing; re-export with `rare export`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e}); re-export with `rare export`") from None


def sidecar_spec(artifact: Path, expected: Optional[ModelSpec] = None) -> ModelSpec:
    return checked_spec(artifact, spec_from_dict(read_sidecar(artifact)["spec"]), expected)


def checked_spec(path: Path, stored: ModelSpec, expected: Optional[ModelSpec]) -> ModelSpec:
    """The spec a runtime of the artifact at `path` reads with: the stored one, which must build the config's
    network (`expected`, when given), decoding as the config says (its lexicon), so every backend of one run reads
    alike."""
    if expected is None:
        return stored
    for part in ("input", "transform", "backbone", "neck", "head"):
        if getattr(stored, part) != getattr(expected, part):
            raise ArtifactError(f"{path}: its {part} ({getattr(stored, part)}) disagrees with the config "
                                f"({getattr(expected, part)}); re-export, or leave out --config to use the stored spec")
    if stored.charset.chars != expected.charset.chars:
        raise ArtifactError(f"{path}: exported with dictionary {stored.charset.source} "
                            f"({len(stored.charset.chars)} chars), the config has {expected.charset.source} "
                            f"({len(expected.charset.chars)} chars)")
    return dataclasses.replace(stored, lexicon=expected.lexicon)


# ------------------------------------------------------------------------------------------------ ONNX


def onnx_metadata(path) -> Dict[str, str]:
    """The metadata_props of the ONNX model at `path` (spec, int8 record) as a dict."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ArtifactError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    return {p.key: p.value for p in model.metadata_props}


def read_onnx_spec(path, expected: Optional[ModelSpec] = None, meta: Optional[Dict[str, str]] = None) -> ModelSpec:
    """The spec stored in an exported model (`meta`: its metadata, when already read); with `expected`, an
    error if they disagree."""
    path = Path(path)
    meta = onnx_metadata(path) if meta is None else meta
    if SPEC_KEY not in meta:
        raise ArtifactError(f"{path}: no {SPEC_KEY} metadata; export it with `rare export --format onnx`")
    return checked_spec(path, spec_from_dict(json.loads(meta[SPEC_KEY])), expected)


def int8_record(metadata: Mapping[str, str], path) -> Optional[dict]:
    """How the model at `path` was quantized, from its ONNX metadata; None for an fp32 model."""
    raw = metadata.get(INT8_KEY)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ArtifactError(f"{path}: its {INT8_KEY} metadata is not JSON ({raw[:40]!r}); re-export it with "
                            f"`rare export --format onnx --int8 ...`") from None


def step_path(encoder_path: Path) -> Path:
    """Where the stepwise decoder's step graph goes, beside its encoder file."""
    return encoder_path.with_name(encoder_path.stem + ".step.onnx")


def check_step_file(encoder_path: Path, name: str) -> Path:
    path = encoder_path.with_name(name)
    if not path.is_file():
        raise ArtifactError(f"{encoder_path}: its step graph {path} is missing; keep the two files of "
                            f"`rare export --decoder stepwise` together, or export again")
    return path


# ---------------------------------------------------------------------------------------------- MindIR


def parse_mindir(path: Path):
    """The file's ModelProto (MindSpore's own protobuf schema)."""
    from mindspore.train import mind_ir_pb2

    model = mind_ir_pb2.ModelProto()
    try:
        model.ParseFromString(Path(path).read_bytes())
    except Exception as e:
        raise ArtifactError(f"{path}: not a MindIR file ({type(e).__name__}: {e})") from None
    return model


def input_names(model):
    """Graph input names as stored in the file."""
    return [i.name for i in model.graph.input]


def user_info(model) -> Dict[str, str]:
    """The `user_info` map; under protobuf's pure-Python backend (which MindSpore needs) MindSpore's generated
    module exposes it as repeated key/value entries."""
    return {entry.key: entry.value for entry in model.user_info}


def embedded_record(model) -> Optional[dict]:
    """The export record stored in the file's user_info, or None (a MindIR not exported by us)."""
    text = user_info(model).get(USER_INFO_KEY)
    return json.loads(text) if text else None


def primitives(model) -> Dict[str, int]:
    """{primitive name: nodes} of a parsed MindIR, graph plumbing left out. Nodes store `REF::Name:id`."""
    counts: Dict[str, int] = {}
    for graph in (model.graph, *model.functions):
        for node in graph.node:
            name = node.op_type.split("::", 1)[-1].rsplit(":", 1)[0]
            if name not in STRUCTURAL:
                counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def read_mindir_info(path, expected: Optional[ModelSpec] = None) -> Tuple[ModelSpec, dict]:
    """(spec, record) of a MindIR, parsed once: the record stored in the file itself, else its sidecar (files
    from other exporters), with the file's `input_name` and `primitives`. `expected` is checked against the
    stored spec."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    model = parse_mindir(path)
    record = embedded_record(model)
    if record is None:
        spec, record = sidecar_spec(path, expected), read_sidecar(path)
    else:
        spec = checked_spec(path, spec_from_dict(record["spec"]), expected)
    return spec, {**record, "input_name": input_names(model)[0], "primitives": primitives(model)}


# ------------------------------------------------------------------------------------------ MindSpore Lite


def read_lite_spec(path, expected: Optional[ModelSpec] = None) -> ModelSpec:
    return sidecar_spec(Path(path), expected)
