"""LMDB and image-folder datasets: round trips, every kind of broken input, and `rare lmdb create`."""
import pickle
import re

import cv2
import lmdb
import numpy as np
import pytest
from click.testing import CliRunner

from rare_portable.commands.lmdb_cmds import lmdb as lmdb_group
from rare_portable.data.folder import FolderDataset
from rare_portable.data.lmdb import LmdbDataset, find_lmdb_datasets, write_lmdb
from rare_portable.data.samples import (
    ENTRY_MISSING,
    IMAGE_FILE_MISSING,
    IMAGE_KEY_MISSING,
    IMAGE_UNDECODABLE,
    LABEL_KEY_MISSING,
    LABEL_NOT_UTF8,
    MALFORMED_LINE,
    DataError,
)


def word_image(seed, h=12, w=30):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png(rgb):
    return cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()


def raw_lmdb(path, entries):
    """An LMDB with exactly these keys, to build broken datasets the writer would refuse to make."""
    env = lmdb.open(str(path), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for key, value in entries.items():
            txn.put(key.encode(), value)
    env.close()
    return path


def good_lmdb(path, n=1):
    return write_lmdb(path, [(png(word_image(i)), f"word{i}") for i in range(n)])


# --- LMDB reading and writing ---------------------------------------------------------------------


def test_write_then_read_round_trip(tmp_path):
    images = [word_image(i, w=20 + i) for i in range(3)]
    assert write_lmdb(tmp_path / "ds", [(png(im), lab) for im, lab in zip(images, ["abc", "Größe", "中文"])]) == 3
    dataset = LmdbDataset(tmp_path / "ds")
    samples = list(dataset)
    assert [(s.index, s.label, s.skip) for s in samples] == [
        (1, "abc", None), (2, "Größe", None), (3, "中文", None)
    ]
    for sample, image in zip(samples, images):
        np.testing.assert_array_equal(sample.image, image)
    assert dataset.skipped.total == 0


def test_written_layout_is_deep_text_recognition_benchmark(tmp_path):
    write_lmdb(tmp_path / "ds", [(b"\x89PNG-bytes", "hello")])
    env = lmdb.open(str(tmp_path / "ds"), readonly=True, lock=False)
    with env.begin() as txn:
        assert dict(txn.cursor()) == {
            b"num-samples": b"1", b"image-000000001": b"\x89PNG-bytes", b"label-000000001": b"hello"
        }
    env.close()


def test_broken_entries_are_skipped_with_reasons(tmp_path):
    path = raw_lmdb(tmp_path / "broken", {
        "num-samples": b"7",
        "image-000000001": png(word_image(1)), "label-000000001": b"good",
        "image-000000002": b"\x00garbage", "label-000000002": b"undecodable",
        "image-000000003": png(word_image(3)),  # no label
        "label-000000004": b"no image",
        "image-000000005": png(word_image(5)), "label-000000005": b"\xff\xfe",
        # 6 and 7: num-samples promises more than there is
    })
    dataset = LmdbDataset(path)
    samples = list(dataset)
    assert len(samples) == 7
    assert [s.index for s in samples if s.skip is None] == [1]
    assert dict(dataset.skipped.counts) == {
        IMAGE_UNDECODABLE: 1, LABEL_KEY_MISSING: 1, IMAGE_KEY_MISSING: 1, LABEL_NOT_UTF8: 1, ENTRY_MISSING: 2
    }
    by_index = {s.index: s.skip.message for s in samples if s.skip}
    assert by_index[2].startswith(f"{path} image-000000002: ")
    assert "no label-000000003 key" in by_index[3]
    assert "num-samples is 7 but entry 6 does not exist" in by_index[6]
    assert dataset.skipped.summary().startswith("6 skipped (2 image and label keys missing")


def test_a_second_pass_recounts_instead_of_accumulating(tmp_path):
    path = raw_lmdb(tmp_path / "ds", {"num-samples": b"1", "image-000000001": b"junk", "label-000000001": b"x"})
    dataset = LmdbDataset(path)
    list(dataset)
    list(dataset)
    assert dataset.skipped.total == 1


def test_empty_dataset_yields_nothing(tmp_path):
    assert write_lmdb(tmp_path / "empty", []) == 0
    dataset = LmdbDataset(tmp_path / "empty")
    assert len(dataset) == 0 and list(dataset) == [] and dataset.skipped.total == 0


def test_missing_num_samples_is_a_clear_error(tmp_path):
    path = raw_lmdb(tmp_path / "nocount", {"image-000000001": b"x", "label-000000001": b"y"})
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: no 'num-samples' key.*rare lmdb create"):
        LmdbDataset(path)


def test_non_numeric_num_samples_is_a_clear_error(tmp_path):
    path = raw_lmdb(tmp_path / "badcount", {"num-samples": b"many"})
    with pytest.raises(DataError, match=r"'num-samples' is b'many', not a count"):
        LmdbDataset(path)


def test_paths_that_are_not_an_lmdb(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path / 'plain'))}: not an LMDB \(no data.mdb\)"):
        LmdbDataset(tmp_path / "plain")
    with pytest.raises(DataError, match="not a directory"):
        LmdbDataset(tmp_path / "plain" / "notes.txt")
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "data.mdb").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path / 'fake'))}: data.mdb cannot be opened as an LMDB"):
        LmdbDataset(tmp_path / "fake")


def test_dataset_survives_pickling_for_worker_processes(tmp_path):
    good_lmdb(tmp_path / "ds", n=2)
    dataset = LmdbDataset(tmp_path / "ds")
    dataset[0]  # opens the read transaction in this process
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone[1].label == "word1"
    with pytest.raises(IndexError):
        clone[2]


def test_find_walks_nested_leaves_in_sorted_order(tmp_path):
    for leaf in ["b/x", "a", "a2/deep/ds", "c/inner"]:
        good_lmdb(tmp_path / leaf)
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "c" / "data.mdb").write_bytes(b"")  # has a sub-folder: not a leaf, not a dataset (as MindOCR)
    assert find_lmdb_datasets(tmp_path) == [tmp_path / p for p in ["a", "a2/deep/ds", "b/x", "c/inner"]]


def test_find_accepts_an_lmdb_as_root(tmp_path):
    good_lmdb(tmp_path / "ds")
    assert find_lmdb_datasets(tmp_path / "ds") == [tmp_path / "ds"]


def test_find_without_any_lmdb_names_the_root(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path))}: no LMDB dataset found"):
        find_lmdb_datasets(tmp_path)
    with pytest.raises(DataError, match="no such directory"):
        find_lmdb_datasets(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(DataError, match=r"notes.txt: a file, not a directory; pass the folder holding"):
        find_lmdb_datasets(tmp_path / "notes.txt")


def test_writer_refuses_to_replace_a_filled_lmdb(tmp_path):
    good_lmdb(tmp_path / "ds", n=2)
    with pytest.raises(DataError, match=r"already holds an LMDB with 5 keys; pass overwrite \(--overwrite\)"):
        write_lmdb(tmp_path / "ds", [(b"x", "new")])
    assert [s.label for s in LmdbDataset(tmp_path / "ds")] == ["word0", "word1"]
    assert write_lmdb(tmp_path / "ds", [(png(word_image(9)), "new")], overwrite=True) == 1
    assert [s.label for s in LmdbDataset(tmp_path / "ds")] == ["new"]


def test_writer_refuses_folders_with_other_content_and_files(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match=r"holds other files \(keep.txt\)"):
        write_lmdb(tmp_path / "busy", [(b"x", "y")], overwrite=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="exists and is not a directory"):
        write_lmdb(tmp_path / "file", [(b"x", "y")])


def test_failed_write_leaves_the_existing_lmdb_and_no_staging(tmp_path):
    good_lmdb(tmp_path / "ds", n=2)

    def failing_samples():
        yield png(word_image(0)), "first"
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        write_lmdb(tmp_path / "ds", failing_samples(), overwrite=True)
    assert [s.label for s in LmdbDataset(tmp_path / "ds")] == ["word0", "word1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_writer_grows_a_small_map(tmp_path):
    blobs = [np.random.default_rng(i).bytes(40_000) for i in range(6)]
    assert write_lmdb(tmp_path / "ds", [(b, str(i)) for i, b in enumerate(blobs)], map_size=1 << 16) == 6
    dataset = LmdbDataset(tmp_path / "ds")
    assert [dataset.read_raw(i).image_bytes for i in range(6)] == blobs


# --- image folder + label file ------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    (images / "a.png").write_bytes(png(word_image(1)))
    (images / "sub" / "b.png").write_bytes(png(word_image(2)))
    (images / "broken.png").write_bytes(b"not a png")
    absolute = tmp_path / "elsewhere.png"
    absolute.write_bytes(png(word_image(3)))
    labels = tmp_path / "labels.txt"
    labels.write_bytes(
        "a.png\tHello World\n"  # 1: tab, label keeps its space
        "sub/b.png Größe\n"  # 2: one space, accepted like MindOCR
        "a.png\tx\ty\n"  # 3: two tabs
        "justonefield\n"  # 4: no separator
        "\n"  # 5: blank, ignored
        "missing.png\tgone\n"  # 6
        "broken.png\tbad\n".encode()  # 7
        + b"a.png\t\xff\n"  # 8: not UTF-8
        + f"{absolute}\tabs\n".encode()  # 9: absolute path wins over the folder (os.path.join)
    )
    return images, labels


def test_folder_dataset_reads_good_lines_and_skips_bad_ones(folder):
    images, labels = folder
    dataset = FolderDataset(images, labels)
    samples = list(dataset)
    good = [(s.index, s.label) for s in samples if s.skip is None]
    assert good == [(1, "Hello World"), (2, "Größe"), (9, "abs")]
    np.testing.assert_array_equal(samples[1].image, word_image(2))
    assert dict(dataset.skipped.counts) == {MALFORMED_LINE: 3, IMAGE_FILE_MISSING: 1, IMAGE_UNDECODABLE: 1}
    messages = {s.index: s.skip.message for s in samples if s.skip}
    assert messages[3] == f"{labels}:3: 2 tabs; write `image_path<TAB>text` with exactly one tab"
    assert messages[4].startswith(f"{labels}:4: no tab")
    assert messages[6].startswith(f"{labels}:6 ({images / 'missing.png'}): image file not found")
    assert messages[7].startswith(f"{labels}:7 ({images / 'broken.png'}): 9 bytes that do not decode")
    assert messages[8].startswith(f"{labels}:8: not UTF-8")


def test_folder_dataset_needs_its_label_file_and_folder(folder, tmp_path):
    images, labels = folder
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path / 'nope.txt'))}: no such label file"):
        FolderDataset(images, tmp_path / "nope.txt")
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path / 'nodir'))}: no such image folder"):
        FolderDataset(tmp_path / "nodir", labels)


# --- rare lmdb create ---------------------------------------------------------------------------------


def create(*args):
    return CliRunner().invoke(lmdb_group, ["create", *map(str, args)])


def test_create_copies_good_samples_byte_for_byte_and_reports_skips(folder, tmp_path):
    images, labels = folder
    result = create("--images", images, "--labels", labels, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert f"wrote 3 samples to {tmp_path / 'out'}; 5 skipped (3 malformed label line" in result.output
    assert f"skipped {labels}:6 ({images / 'missing.png'}): image file not found" in result.output
    dataset = LmdbDataset(tmp_path / "out")
    assert [s.label for s in dataset] == ["Hello World", "Größe", "abs"]
    assert dataset.read_raw(0).image_bytes == (images / "a.png").read_bytes()


def test_create_refuses_to_overwrite_without_the_flag(folder, tmp_path):
    images, labels = folder
    args = ("--images", images, "--labels", labels, "--output", tmp_path / "out")
    assert create(*args).exit_code == 0
    again = create(*args)
    assert again.exit_code == 1
    assert f"Error: {tmp_path / 'out'}: already holds an LMDB" in again.output and "--overwrite" in again.output
    assert create(*args, "--overwrite").exit_code == 0


def test_create_with_nothing_usable_writes_nothing(tmp_path):
    (tmp_path / "images").mkdir()
    labels = tmp_path / "labels.txt"
    labels.write_text("missing.png\tword\n")
    result = create("--images", tmp_path / "images", "--labels", labels, "--output", tmp_path / "out")
    assert result.exit_code == 1
    assert f"Error: {labels}: no usable sample (1 skipped (1 image file missing))" in result.output
    assert not (tmp_path / "out").exists()


def test_create_names_a_missing_label_file(tmp_path):
    result = create("--images", tmp_path, "--labels", tmp_path / "labels.txt", "--output", tmp_path / "out")
    assert result.exit_code == 1
    assert f"Error: {tmp_path / 'labels.txt'}: no such label file" in result.output


def _numbered_lmdb(path, count):
    write_lmdb(path, ((f"img{i}".encode(), f"w{i}") for i in range(1, count + 1)))
    return path


def test_split_holds_out_the_trailing_block_bytes_unchanged(tmp_path):
    source = _numbered_lmdb(tmp_path / "src" / "IC15_train", 10)
    out = tmp_path / "split"
    result = CliRunner().invoke(lmdb_group, ["split", str(source), "--hold-out", "0.3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    finetune, holdout = LmdbDataset(out / "finetune" / "IC15_train"), LmdbDataset(out / "holdout" / "IC15_train")
    assert [finetune.read_raw(i).label for i in range(len(finetune))] == [f"w{i}" for i in range(1, 8)]
    assert [holdout.read_raw(i).label for i in range(len(holdout))] == ["w8", "w9", "w10"]
    assert holdout.read_raw(0).image_bytes == b"img8"
    everything = CliRunner().invoke(lmdb_group, ["split", str(source), "--hold-out", "1", "-o", str(tmp_path / "all")])
    assert everything.exit_code == 0, everything.output
    assert len(LmdbDataset(tmp_path / "all" / "holdout" / "IC15_train")) == 10
    assert not (tmp_path / "all" / "finetune").exists()


def test_split_refuses_two_sources_of_one_name_and_a_filled_output(tmp_path):
    a = _numbered_lmdb(tmp_path / "a" / "data", 4)
    b = _numbered_lmdb(tmp_path / "b" / "data", 4)
    twice = CliRunner().invoke(lmdb_group, ["split", str(a), str(b), "--hold-out", "0.5", "-o", str(tmp_path / "o")])
    assert twice.exit_code == 1 and "both named data" in twice.output
    first = CliRunner().invoke(lmdb_group, ["split", str(a), "--hold-out", "0.5", "-o", str(tmp_path / "o")])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(lmdb_group, ["split", str(a), "--hold-out", "0.5", "-o", str(tmp_path / "o")])
    assert again.exit_code == 1 and "--overwrite" in again.output
