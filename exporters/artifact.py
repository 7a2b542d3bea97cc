"""What every exported artifact carries: the spec, so a runtime needs nothing else, and the check that
an artifact and a config describe the same model."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from rare_portable import __version__
from rare_portable.spec import ModelSpec, spec_from_dict, spec_to_dict
from rare_portable.errors import UserError


class ArtifactError(UserError, RuntimeError):
    """An artifact that cannot be used as asked; the message names the file and expected vs actual."""


def output_folder(output: Path) -> Path:
    """The folder `output` goes into, created if needed; one that cannot be made or written to is an
    ArtifactError naming it, raised before anything is exported."""
    folder = Path(output).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArtifactError(f"{output}: cannot create the folder {folder} ({e.strerror or e}); "
                            f"choose an output path in a folder you can write to") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ArtifactError(f"{output}: the folder {folder} is not writable; choose an output path in a folder "
                            f"you can write to")
    return folder


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
    spec = spec_from_dict(read_sidecar(artifact)["spec"])
    if expected is not None:
        check_same_spec(artifact, spec, expected)
    return spec


def check_same_spec(path: Path, stored: ModelSpec, expected: ModelSpec) -> None:
    for part in ("input", "transform", "backbone", "neck", "head"):
        if getattr(stored, part) != getattr(expected, part):
            raise ArtifactError(f"{path}: its {part} ({getattr(stored, part)}) disagrees with the config "
                                f"({getattr(expected, part)}); re-export, or leave out --config to use the stored spec")
    if stored.charset.chars != expected.charset.chars:
        raise ArtifactError(f"{path}: exported with dictionary {stored.charset.source} "
                            f"({len(stored.charset.chars)} chars), the config has {expected.charset.source} "
                            f"({len(expected.charset.chars)} chars)")
