"""Hostile dataset folders (issue 28), beside tests/test_data.py's bad-image corpus: each ends in a clear
message, loses nothing silently and never hangs.

Class folder names with control characters, thousands of one-image classes, symlink loops, a FIFO and a
device node named like images, 100,000 zero-byte files; and `visible`, the one helper that makes control
characters printable wherever a label, class name or file name is shown.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edgetl.data.dataset import DatasetError, SplitConfig, scan_dataset
from edgetl.io.text import has_hidden, visible


def _png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((2, 2, 3), 0, np.uint8)
    pixels.reshape(-1)[:4] = np.frombuffer(int(value).to_bytes(4, "little"), np.uint8)  # distinct bytes per file
    Image.fromarray(pixels).save(path)
    return path


def _classes(root: Path, names: list[str], per_class: int = 10) -> Path:
    for c, name in enumerate(names):
        for i in range(per_class):
            _png(root / name / f"{name}_{i}.png", c * 1000 + i)
    return root


def _scan_within(root: Path, seconds: float = 60.0, split: SplitConfig = SplitConfig(20, 20)):
    """scan_dataset in a thread: a scanner that opened a FIFO would block forever; this fails instead."""
    out: dict = {}

    def run():
        try:
            out["dataset"] = scan_dataset(root, split)
        except Exception as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"scan_dataset({root}) did not finish in {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["dataset"]


# ---------------------------------------------------------------------------------------------------------
# visible


def test_visible_escapes_terminal_sequences_and_keeps_text():
    assert visible("\x1b]0;title\x07\x1b[2Jcats") == "\\x1b]0;title\\x07\\x1b[2Jcats"
    assert visible("a\nb\tc\r") == "a\\nb\\tc\\r"
    assert visible("evil\u202etxt.exe") == "evil\\u202etxt.exe"  # a bidi override reorders what is shown
    assert visible("\x9b31m") == "\\x9b31m"  # C1 CSI: one byte that some terminals obey
    for text in ("daisy", "Rosa × hybrida", "タンポポ", "👨\u200d👩\u200d👧", "naïve café", "a b"):
        assert visible(text) == text


@settings(max_examples=200, derandomize=True, database=None)
@given(st.text())
def test_visible_leaves_nothing_hidden_and_is_idempotent(text):
    shown = visible(text)
    assert not has_hidden(shown)
    assert visible(shown) == shown
    if not has_hidden(text):
        assert shown == text


# ---------------------------------------------------------------------------------------------------------
# hostile folders


def test_class_folders_with_control_characters_are_renamed_with_a_note_and_keep_their_images(tmp_path):
    evil = "ro\x1b]0;owned\x07\x1b[2Jses"
    root = _classes(tmp_path / "ds", ["daisy", evil])
    ds = _scan_within(root)
    assert ds.classes == ["daisy", visible(evil)]
    assert not any(has_hidden(c) for c in ds.classes)
    assert sum(r.label == visible(evil) for r in ds.records) == 10  # nothing lost
    assert any("control characters" in w and visible(evil) in w for w in ds.warnings)
    assert not any(has_hidden(line) for line in ds.messages())


def test_two_class_folders_that_look_the_same_once_escaped_are_refused(tmp_path):
    root = _classes(tmp_path / "ds", ["a\x1b", "a\\x1b", "b"])
    with pytest.raises(DatasetError, match="both named"):
        _scan_within(root)


def test_control_characters_in_file_names_are_escaped_in_every_message(tmp_path):
    root = _classes(tmp_path / "ds", ["a", "b"])
    (root / "a" / "bad\x1b[2J.txt").write_text("not an image")
    (root / "a" / "\x1b[31mempty.jpg").write_bytes(b"")
    ds = _scan_within(root)
    assert len(ds.skipped) == 2
    lines = ds.messages()
    assert any("\\x1b[2J" in line for line in lines) and any("0 bytes" in line for line in lines)
    assert not any(has_hidden(line) for line in lines)


def test_thousands_of_one_image_classes_scan_with_few_notes(tmp_path):
    names = [f"class_{i:04d}" for i in range(3000)]
    root = _classes(tmp_path / "ds", names, per_class=1)
    start = time.perf_counter()
    ds = _scan_within(root, split=SplitConfig(10, 10))
    seconds = time.perf_counter() - start
    assert len(ds.classes) == 3000 and len(ds.records) == 3000  # nothing lost
    assert len(ds.warnings) <= 3, ds.warnings[:5]  # one note for the small classes, not 3,000
    assert any("3000 classes have few images" in w for w in ds.warnings)
    untrained = [w for w in ds.warnings if "no training image" in w]
    assert len(untrained) == 1 and "cannot learn" in untrained[0]
    assert seconds < 30


def test_symlink_loops_are_skipped_by_name_and_the_scan_finishes(tmp_path):
    root = _classes(tmp_path / "ds", ["a", "b"])
    os.symlink("loop.jpg", root / "a" / "loop.jpg")  # a symlink to itself
    os.symlink("..", root / "a" / "up")  # a folder symlink back to the dataset: not followed
    os.symlink(root, root / "b" / "root")
    os.symlink("rootloop", root / "rootloop")  # at the top: not a class folder
    ds = _scan_within(root)
    assert ds.classes == ["a", "b"] and len(ds.records) == 20
    reasons = {p.name: why for p, why in ds.skipped}
    assert "cannot be read" in reasons["loop.jpg"] and "symbolic links" in reasons["loop.jpg"]
    assert any("rootloop" in w and "not a class folder" in w for w in ds.warnings)


def test_a_fifo_and_a_device_node_named_like_images_are_skipped_without_being_opened(tmp_path):
    root = _classes(tmp_path / "ds", ["a", "b"])
    os.mkfifo(root / "a" / "pipe.jpg")  # opening it for reading would block until a writer comes
    os.symlink(os.devnull, root / "a" / "null.png")  # a character device, through a symlink
    ds = _scan_within(root, seconds=30)
    reasons = {p.name: why for p, why in ds.skipped}
    assert reasons["pipe.jpg"] == "not a regular file: a FIFO"
    assert reasons["null.png"] == "not a regular file: a device node"
    assert len(ds.records) == 20


def test_a_hundred_thousand_zero_byte_files_are_skipped_with_one_summary(tmp_path):
    root = _classes(tmp_path / "ds", ["a", "b"])
    junk = root / "a" / "junk"
    junk.mkdir()
    start = time.perf_counter()
    for i in range(100_000):
        os.close(os.open(junk / f"{i:06d}.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
    made = time.perf_counter() - start
    ds = _scan_within(root, seconds=120)
    assert len(ds.records) == 20
    assert len(ds.skipped) == 100_000 and {why for _, why in ds.skipped} == {"empty file (0 bytes)"}
    lines = ds.messages()
    assert len(lines) < 30 and "99980 more skipped" in lines[-1], (made, lines[-3:])


def test_label_image_refuses_a_fifo_as_image_or_label_file_without_blocking(tmp_path, tiny_models):
    import subprocess
    import sys

    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    repo = Path(__file__).resolve().parents[1]
    for flags in (["--image", str(fifo)], ["--image", str(tiny_models.images[0]), "--label_file", str(fifo)]):
        cmd = [sys.executable, str(repo / "tools" / "label_image.py"), "--model_file", str(tiny_models.float_tflite)]
        proc = subprocess.run(cmd + flags, capture_output=True, text=True, timeout=120)
        assert proc.returncode in (1, 2) and "not a regular file" in proc.stderr, proc.stderr
