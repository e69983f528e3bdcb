"""Dataset layouts, speaker-disjoint splits and task mapping."""

from __future__ import annotations

import numpy as np
import pytest

from speechlstm.data.datasets import (
    DatasetError,
    check_speakers_disjoint,
    discover,
    hash_split,
    speaker_of,
    task_split,
)
from speechlstm.labels import SC12_WORDS, SILENCE, UNKNOWN, make_task
from speechlstm.testing.synth_audio import make_dataset


def test_speech_commands_layout_uses_the_lists(tmp_path):
    root = make_dataset(tmp_path / "sc", speakers=8, takes=1)
    index = discover(root)
    assert index.kind == "speech-commands"
    assert len(index.noise_files) == 1
    val = {f"{c.word}/{c.path.name}" for c in index.split("validation")}
    assert val == set((root / "validation_list.txt").read_text().split())
    assert {c.speaker for c in index.split("test")} == {"spk03"}
    assert len(index.split("train")) == 4 * 5  # 4 words x speakers 0, 2, 4, 5, 7
    assert check_speakers_disjoint(index) == {}


def test_without_lists_the_speaker_hash_split_keeps_speakers_apart(tmp_path):
    root = make_dataset(tmp_path / "folders", speakers=40, takes=2, lists=False, noise=False)
    index = discover(root)
    assert index.kind == "folders"
    assert check_speakers_disjoint(index) == {}
    shares = {s: len(index.split(s)) / len(index.clips) for s in ("train", "validation", "test")}
    assert shares["train"] > 0.6 and shares["validation"] > 0 and shares["test"] > 0


def test_hash_split_matches_the_speech_commands_rule():
    # Same speaker -> same split, whatever the take number or word.
    a = hash_split("yes/0a7c2a8d_nohash_0.wav")
    assert all(
        hash_split(f"{w}/0a7c2a8d_nohash_{n}.wav") == a for w in ("no", "up") for n in range(5)
    )
    assert speaker_of("left/abc123_nohash_4.wav") == "abc123"
    splits = [hash_split(f"x/{i:08x}_nohash_0.wav") for i in range(4000)]
    assert 0.07 < splits.count("validation") / 4000 < 0.13
    assert 0.07 < splits.count("test") / 4000 < 0.13


def test_csv_manifest_with_and_without_split(tmp_path):
    root = make_dataset(tmp_path / "m", speakers=6, takes=1, lists=False, noise=False)
    manifest = tmp_path / "m" / "list.csv"
    manifest.write_text(
        "path,label,split\n"
        "yes/spk00_nohash_0.wav,yes,train\n"
        "no/spk01_nohash_0.wav,no,val\n"
        "up/spk02_nohash_0.wav,up,testing\n"
        "down/spk03_nohash_0.wav,down\n"
    )
    index = discover(manifest)
    assert index.kind == "manifest"
    assert [c.split for c in index.clips[:3]] == ["train", "validation", "test"]
    assert index.clips[3].split == hash_split(root / "down/spk03_nohash_0.wav")
    assert index.clips[0].path == root / "yes/spk00_nohash_0.wav"


def test_bad_manifest_and_missing_dataset(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label,split\na.wav,yes,holdout\n")
    with pytest.raises(DatasetError, match="holdout"):
        discover(bad)
    with pytest.raises(DatasetError, match="no such file"):
        discover(tmp_path / "absent")
    (tmp_path / "emptyset" / "yes").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no audio found"):
        discover(tmp_path / "emptyset")


def test_sc12_maps_other_words_to_unknown_and_adds_silence(tmp_path):
    root = make_dataset(tmp_path / "sc", speakers=6, takes=1)
    (root / "cat").mkdir()
    src = next((root / "yes").iterdir())
    (root / "cat" / "spk05_nohash_0.wav").write_bytes(src.read_bytes())
    index = discover(root)
    task = make_task("sc12", None, index.words)
    assert task.labels == SC12_WORDS + (UNKNOWN, SILENCE)
    spec = task_split(index, task, "train", silence_share=0.5)
    labels = [task.labels[t] for t in spec.targets]
    assert labels.count(UNKNOWN) == 1  # the cat clip
    assert spec.n_generated_silence == round(0.5 * len(labels))


def test_words_task_and_its_errors():
    task = make_task(None, "yes,no", ["yes", "no", "up"])
    assert task.labels == ("yes", "no", UNKNOWN, SILENCE)
    assert task.class_of("up") == UNKNOWN
    with pytest.raises(ValueError, match="maybe"):
        make_task(None, "yes,maybe", ["yes", "no"])
    all_task = make_task("all", None, ["b", "a"])
    assert all_task.labels == ("a", "b", SILENCE)
    with pytest.raises(ValueError, match="unknown task"):
        make_task("sc99", None, ["a", "b"])


def test_prepare_builds_banks_with_silence_and_reports_bad_files(tmp_path):
    from speechlstm.config import DataConfig, FeatureConfig
    from speechlstm.data.prepare import prepare

    root = make_dataset(tmp_path / "sc", speakers=6, takes=1)
    (root / "yes" / "spk07_nohash_0.wav").write_text("not audio")
    data = prepare(root, DataConfig(task="all"), FeatureConfig(), seed=0, cache_dir=tmp_path / "c")
    train = data.splits["train"]
    assert train.audio.dtype == np.int16 and train.audio.shape[1] == 16000
    assert str(root / "yes" / "spk07_nohash_0.wav") in data.errors
    silence_id = data.task.labels.index(SILENCE)
    assert (train.targets == silence_id).sum() >= 1
    # The cache is keyed by content: a second call reads it and gives identical arrays.
    again = prepare(root, DataConfig(task="all"), FeatureConfig(), seed=0, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(again.splits["train"].audio, train.audio)
    assert list((tmp_path / "c").glob("bank-*.npz"))


def test_extra_sources_join_the_training_split_only(tmp_path):
    """`train --add DIR`: every clip of an extra source joins training (words
    outside the task as _unknown_), validation and test stay the primary's."""
    from speechlstm.config import DataConfig, FeatureConfig
    from speechlstm.data.prepare import prepare

    primary = make_dataset(tmp_path / "primary", words=("yes", "no", "up"), speakers=5, takes=1)
    extra = make_dataset(tmp_path / "extra", words=("yes", "up"), speakers=2, takes=2, lists=False)
    words = ("yes", "no")
    base = prepare(primary, DataConfig(words=words), FeatureConfig(), seed=0)
    mixed = prepare(primary, DataConfig(words=words, extra=(str(extra),)), FeatureConfig(), seed=0)
    for split in ("validation", "test"):
        assert mixed.splits[split].paths == base.splits[split].paths
        np.testing.assert_array_equal(mixed.splits[split].targets, base.splits[split].targets)
    train = mixed.splits["train"]
    added = [i for i, p in enumerate(train.paths) if p not in set(base.splits["train"].paths)]
    assert all(train.paths[i].startswith(str(extra)) for i in added)
    labels = [mixed.task.labels[train.targets[i]] for i in added]
    assert sorted(labels) == ["_unknown_"] * 4 + ["yes"] * 4  # every split of the extra
    assert str(extra) in mixed.noise_source


def test_a_missing_extra_source_is_an_error_naming_it(tmp_path):
    from speechlstm.config import DataConfig, FeatureConfig
    from speechlstm.data.prepare import prepare

    primary = make_dataset(tmp_path / "primary", words=("yes", "no"), speakers=5, takes=1)
    with pytest.raises(DatasetError, match="nowhere"):
        prepare(primary, DataConfig(extra=(str(tmp_path / "nowhere"),)), FeatureConfig(), seed=0)
