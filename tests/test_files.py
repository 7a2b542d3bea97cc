"""Output files: atomic writes leave the permissions a plain `open` gives, not mkstemp's 0600, and every command
that writes checks its output folder before it works."""
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from rare_portable.cli import main
from rare_portable.weights import write_state


def test_written_weights_are_readable_by_others(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_state({"w": np.zeros(3, np.float32)}, tmp_path / "w.safetensors")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left beside it


SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
WORD = SHARED / "real_words" / "demo_1.png"
# Each command that writes, with OUT where its output path goes: the rest of each line is valid input.
WRITERS = {
    "eval --json": ["eval", "-c", "rare_tiny", "--data", WORD.parent, "--label-file", WORD.parent / "labels.tsv",
                    "--json", "OUT/report.json"],
    "eval --predictions": ["eval", "-c", "rare_tiny", "--data", WORD.parent, "--label-file",
                           WORD.parent / "labels.tsv", "--predictions", "OUT/readings.tsv"],
    "predict -o": ["predict", "-c", "rare_tiny", WORD, "-o", "OUT/rec_results.txt"],
    "parity --json": ["parity", "-c", "rare_tiny", "--backend", "torch", "--images", WORD.parent, "--json",
                      "OUT/parity.json"],
    "parity --workdir": ["parity", "-c", "rare_tiny", "--backend", "torch", "--images", WORD.parent, "--workdir",
                         "OUT/work"],
    "rectify -o": ["rectify", "-c", "rare_tps_resnet34", WORD, "-o", "OUT/rectified"],
    "synth -o": ["synth", "-o", "OUT/words", "-n", "3"],
    "lmdb split -o": ["lmdb", "split", SHARED / "real_validation" / "SVT_train", "--hold-out", "1.0", "-o", "OUT"],
    "train ckpt_save_dir": ["train", "-c", "rare_tiny", "--opt", f"train.dataset.dataset_root={SHARED}",
                            "--opt", "train.dataset.data_dir=real_validation/SVT_train", "--opt",
                            f"eval.dataset.dataset_root={SHARED}", "--opt", "eval.dataset.data_dir=real_validation/SVT_train",
                            "--opt", "train.ckpt_save_dir=OUT/run"],
}


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_an_output_folder_that_cannot_be_made_is_one_line_and_nothing_is_written(command, tmp_path, monkeypatch,
                                                                                  capsys):
    """OUT lies under a plain file, so its folder cannot be made: the command says so in one line naming it
    (checked before the work, so a long run never ends in a traceback) and leaves the file alone."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    out = blocker / "out"
    args = [str(a).replace("OUT", str(out)) for a in WRITERS[command]]  # no other argument holds "OUT"
    monkeypatch.setattr(sys, "argv", ["rare", *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    err = capsys.readouterr().err
    assert stopped.value.code in (1, 2), err  # 1: the data commands' exit status for every data error
    (line,) = err.splitlines()
    assert line.startswith(f"Error: {out}") and f"cannot create the folder {out}" in line, line
    assert line.endswith("(Not a directory); choose an output path in a folder you can write to"), line
    assert sorted(tmp_path.iterdir()) == [blocker] and blocker.read_text() == "a file, not a folder"
