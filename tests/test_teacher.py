"""The embedding teacher (train/embedding.py, train/teacher.py) on a stand-in
embedding built in the test (stand_in_embedding.py): no real model files needed."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import tiny_config

from speechlstm.testing.synth_audio import tone_word

pytestmark = pytest.mark.train


def _clips(words=("yes", "no", "up", "down")) -> np.ndarray:
    return np.stack([(tone_word(w) * 32767).astype(np.int16) for w in words])


def test_embedding_frames_have_openwakewords_shape_and_cache_round_trips(stand_in, tmp_path):
    from speechlstm.train import embedding as E

    model = E.SpeechEmbedding()
    clips = _clips()
    cache = E.EmbeddingCache(tmp_path / "cache")
    first = E.embed_cached(model, clips, cache)
    assert first.shape == (4, E.N_FRAMES, E.EMBED_DIM) == (4, 16, 96)
    # Different words give different frames.
    assert np.abs(first[0] - first[1]).max() > 1e-2
    # The second pass reads every clip from the cache: the model is not called.
    model.embed = lambda _: pytest.fail("a cached clip was embedded again")
    again = E.embed_cached(model, clips, cache)
    np.testing.assert_array_equal(first, again)
    # Another augmentation key is another entry.
    assert cache.key(model.digest, clips[0], "noise:1") != cache.key(model.digest, clips[0])


def test_a_clip_is_embedded_alone_whatever_the_batch(stand_in):
    from speechlstm.train.embedding import SpeechEmbedding

    model = SpeechEmbedding()
    clips = _clips()
    together = model.embed(clips)
    for i, clip in enumerate(clips):
        np.testing.assert_allclose(model.embed(clip[None]), together[i : i + 1], atol=1e-5)


def test_missing_model_files_name_the_package(monkeypatch, tmp_path):
    from speechlstm.train import embedding as E

    monkeypatch.setenv("SPEECHLSTM_EMBEDDING_DIR", str(tmp_path))
    with pytest.raises(E.EmbeddingUnavailable, match="openwakeword==0.4.0"):
        E.find_model_files()


@pytest.mark.slow
def test_teacher_learns_the_words_and_a_student_distils_from_it(stand_in, tmp_path, tone_dataset):
    from speechlstm.train.run import run_training
    from speechlstm.train.teacher import TEACHER_FILE, EmbeddingTeacher, TeacherConfig, run_teacher

    cfg = tiny_config(epochs=2)
    report = run_teacher(
        tone_dataset,
        tmp_path / "teacher",
        cfg,
        TeacherConfig(epochs=15, hidden_size=16, batch_size=16, lr=1e-2),
        cache_dir=tmp_path / "cache",
        show_progress=False,
    )
    # Five classes (four words and _silence_): chance is 0.2.
    assert report["best_val_accuracy"] >= 0.8
    assert report["test_accuracy"] >= 0.8
    path = tmp_path / "teacher" / TEACHER_FILE
    saved = json.loads((tmp_path / "teacher/metrics.json").read_text())
    assert saved["labels"] == report["labels"]
    # The same folder is not overwritten.
    with pytest.raises(ValueError, match="already holds a teacher"):
        run_teacher(tone_dataset, tmp_path / "teacher", cfg, TeacherConfig(epochs=1))

    # The file loads back and agrees with the report on the test clips.
    teacher = EmbeddingTeacher(path, tmp_path / "cache")
    assert teacher.labels == report["labels"]
    # A one-head teacher exports to one graph that computes what it computes.
    from speechlstm.train.frontend_export import export_embedding

    assert export_embedding(tmp_path / "teacher", tmp_path / "t.onnx").max_abs_diff <= 1e-4

    # A student distils from it: with weight 1 the loss is the KL alone, so two
    # runs that differ only in the teacher's temperature train differently.
    def student(name, temperature):
        c = dataclasses.replace(
            cfg,
            train=dataclasses.replace(
                cfg.train,
                teacher=(str(path),),
                distill_weight=1.0,
                distill_temperature=temperature,
            ),
        )
        return run_training(
            tone_dataset, tmp_path / name, c, cache_dir=tmp_path / "cache", show_progress=False
        )

    a, b = student("s1", 1.0), student("s2", 4.0)
    assert a["history"][-1]["train_loss"] != b["history"][-1]["train_loss"]


def test_augmented_copies_are_noisy_reproducible_and_embedded_once_each(stand_in, tmp_path):
    from speechlstm.config import AugmentConfig, FeatureConfig
    from speechlstm.data.noise import default_noise_bank
    from speechlstm.train import embedding as E
    from speechlstm.train.teacher import augmented_chunks

    def augmented_copies(clips, noise, aug, features, copies, seed, **kw):
        return [
            np.concatenate(list(augmented_chunks(clips, noise, aug, features, c, seed, **kw)))
            for c in range(1, copies + 1)
        ]

    clips = _clips()
    # Digital silence around the word, as synthesized clips have.
    clips[:, :2000] = 0
    noise = np.stack([w for w in default_noise_bank(seconds_each=2.0)]).astype(np.float32)
    aug = AugmentConfig(noise_prob=1.0, noise_volume_max=0.2, reverb_prob=0.5)
    first = augmented_copies(clips, noise, aug, FeatureConfig(), copies=2, seed=3, batch_size=3)
    assert len(first) == 2 and all(c.shape == clips.shape and c.dtype == np.int16 for c in first)
    # Each copy differs from the clip and from the other copy; the silence is filled.
    assert not np.array_equal(first[0], clips) and not np.array_equal(first[0], first[1])
    assert np.abs(first[0][:, :1000]).max() > 0
    # The same seed draws the same copies, however they are chunked: the cache finds them.
    again = augmented_copies(
        clips, noise, aug, FeatureConfig(), copies=2, seed=3, batch_size=3, chunk=3
    )
    np.testing.assert_array_equal(first[1], again[1])
    cache = E.EmbeddingCache(tmp_path / "cache")
    model = E.SpeechEmbedding()
    E.embed_cached(model, first[1], cache)
    model.embed = lambda _: pytest.fail("a cached copy was embedded again")
    E.embed_cached(model, again[1], cache)


def test_teacher_trains_on_its_copies(stand_in, tmp_path, tone_dataset):
    from speechlstm.train.teacher import TeacherConfig, run_teacher

    cfg = tiny_config(epochs=2)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, embedding_copies=2))
    tcfg = TeacherConfig.from_run(cfg, epochs=3, hidden_size=8, batch_size=16)
    assert tcfg.copies == 2
    report = run_teacher(
        tone_dataset, tmp_path / "t", cfg, tcfg, cache_dir=tmp_path / "c", show_progress=False
    )
    assert report["teacher"]["copies"] == 2
    # Two heads by default (train.embedding_heads), each with its own copies.
    assert report["heads"] == 2 and {h["head"] for h in report["history"]} == {1, 2}
    # Three times the training clips: each epoch takes three times the steps.
    plain = run_teacher(
        tone_dataset,
        tmp_path / "p",
        cfg,
        dataclasses.replace(tcfg, copies=0),
        cache_dir=tmp_path / "c",
        show_progress=False,
    )
    assert report["train_steps_per_epoch"] >= 3 * plain["train_steps_per_epoch"] - 2


def test_embedding_teacher_with_other_labels_or_other_files_is_refused(
    stand_in, tmp_path, tone_dataset
):
    from speechlstm.train.distill import clip_teacher_probs
    from speechlstm.train.teacher import TEACHER_FILE, TeacherConfig, run_teacher

    run_teacher(
        tone_dataset,
        tmp_path / "t",
        tiny_config(),
        TeacherConfig(epochs=1, hidden_size=8),
        cache_dir=tmp_path / "cache",
        show_progress=False,
    )
    path = str(tmp_path / "t" / TEACHER_FILE)
    with pytest.raises(ValueError, match="labels"):
        clip_teacher_probs((path,), ["yes", "no"], _clips(), 2.0, tmp_path / "cache")
    (tmp_path / "junk.safetensors").write_bytes(b"not a teacher")
    with pytest.raises(ValueError, match="junk.safetensors"):
        clip_teacher_probs(
            (str(tmp_path / "junk.safetensors"),), ["yes"], _clips(), 2.0, tmp_path / "cache"
        )


@pytest.mark.slow
def test_feature_distillation_trains_keeps_its_projector_to_resume_and_exports_without_it(
    stand_in, tmp_path, tone_dataset
):
    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.train import checkpoint
    from speechlstm.train.export import export
    from speechlstm.train.run import run_training

    cfg = tiny_config(epochs=2)
    with_fd = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, feature_distill=1.0))
    report = run_training(
        tone_dataset, tmp_path / "fd", with_fd, cache_dir=tmp_path / "cache", show_progress=False
    )
    plain = run_training(
        tone_dataset, tmp_path / "plain", cfg, cache_dir=tmp_path / "cache", show_progress=False
    )
    # The regression term adds to the loss: the two runs differ from the first epoch.
    assert report["history"][0]["train_loss"] > plain["history"][0]["train_loss"]
    last = checkpoint.load(tmp_path / "fd/last.pt", resumable=True)
    assert last.projector is not None and last.projector["weight"].shape == (96, 48)
    # Resuming continues with the projector; the exported model is the recognizer alone.
    run_training(
        tone_dataset, tmp_path / "fd", dataclasses.replace(with_fd), resume=True,
        cache_dir=tmp_path / "cache", show_progress=False,
    )  # fmt: skip
    result = export(tmp_path / "fd/best.pt", tmp_path / "fd.onnx")
    assert result.max_abs_diff < 1e-4
    assert len(OnnxRecognizer(result.path).labels) == 5


def test_train_frontend_embedding_augments_its_copies_as_measured_unless_told(
    stand_in, tmp_path, tone_dataset
):
    """`train --frontend embedding` with no --config and no --set augment.*: the
    copies get the augmentation the custom-words figures were measured with
    (rooms, louder noise, speed); a run that sets its own augmentation keeps it."""
    from typer.testing import CliRunner

    from cli.main import app
    from speechlstm.config import AugmentConfig
    from speechlstm.config_text import load_toml
    from speechlstm.train.teacher import COPIES_AUGMENT

    runner = CliRunner()
    small = ["--epochs", "2", "--hidden", "8", "--set", "train.embedding_copies=1"]
    small += ["--set", "train.embedding_heads=1", "--no-progress"]
    small += ["--cache-dir", str(tmp_path / "c")]
    measured = tmp_path / "measured"
    args = ["train", str(tone_dataset), "--frontend", "embedding", "--out", str(measured)]
    result = runner.invoke(app, args + small)
    assert result.exit_code == 0, result.output
    aug = load_toml(measured / "config.toml").augment
    assert aug.speed == COPIES_AUGMENT["speed"] > 0 and aug.reverb_prob == 0.5
    # A run that sets its own augmentation (here through --config's layering) keeps it.
    from speechlstm.config import RunConfig
    from speechlstm.config_text import apply_overrides
    from speechlstm.train.teacher import copies_augment

    own = copies_augment(apply_overrides(RunConfig(), {"augment.gain_db": "3"})).augment
    assert own == AugmentConfig(gain_db=3.0) and own.speed == 0.0
