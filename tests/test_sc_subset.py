"""scripts/sc_subset.py: the default model's real clips, linked from any Speech Commands tree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from speechlstm.data.datasets import discover
from speechlstm.testing.synth_audio import make_dataset

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("sc_subset", ROOT / "scripts" / "sc_subset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_links_exactly_the_listed_clips_with_their_splits(tmp_path):
    tree = make_dataset(tmp_path / "sc", words=("yes", "no"), speakers=5, takes=1)
    listing = tmp_path / "clips.csv"
    listing.write_text(
        "clip,split\nyes/spk00_nohash_0,train\nno/spk02_nohash_0,train\n"
        "yes/spk01_nohash_0,validation\nno/spk03_nohash_0,test\n"
    )
    counts = _script().build(tree, listing, tmp_path / "out")
    assert counts == {"train": 2, "validation": 1, "test": 1}
    index = discover(tmp_path / "out")
    assert sorted(str(c.path.relative_to(tmp_path / "out")) for c in index.split("train")) == [
        "no/spk02_nohash_0.wav",
        "yes/spk00_nohash_0.wav",
    ]
    assert [c.word for c in index.split("validation")] == ["yes"]
    assert [c.word for c in index.split("test")] == ["no"]
    assert index.noise_files  # the tree's _background_noise_ is linked
    assert all(p.is_symlink() for p in (tmp_path / "out" / "yes").iterdir())


def test_a_missing_clip_stops_with_its_name(tmp_path):
    tree = make_dataset(tmp_path / "sc", words=("yes",), speakers=2, takes=1)
    listing = tmp_path / "clips.csv"
    listing.write_text("clip,split\nyes/spk00_nohash_0,train\nyes/nobody_nohash_9,train\n")
    with pytest.raises(SystemExit, match="yes/nobody_nohash_9"):
        _script().build(tree, listing, tmp_path / "out")


def test_the_shipped_list_names_every_split():
    rows = (ROOT / "data" / "sc12_clips.csv").read_text().splitlines()
    assert rows[0] == "clip,split"
    splits = {row.rsplit(",", 1)[1] for row in rows[1:]}
    assert splits == {"train", "validation", "test"}
    assert not any(row.split(",")[0].endswith((".wav", ".flac")) for row in rows[1:])
