"""The embedding model (train/embedding.py, train/embedding_model/) and the
learning sources that distil from it (train/distill.py), on a stand-in
embedding built in the test (stand_in_embedding.py): no real model files needed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

from speechlstm.testing.synth_audio import tone_word

pytestmark = pytest.mark.train


def _with_embedding(cfg, **values):
    """`cfg` with [embedding] settings replaced."""
    return dataclasses.replace(cfg, embedding=dataclasses.replace(cfg.embedding, **values))


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
def test_embedding_model_learns_the_words_and_a_student_distils_from_it(
    stand_in, tmp_path, tone_dataset
):
    from speechlstm.train.embedding_model.model_file import MODEL_FILE, EmbeddingModel
    from speechlstm.train.run import run_embedding_model, run_training

    cfg = tiny_config(epochs=2)
    emb = _with_embedding(cfg, epochs=15, hidden_size=16, batch_size=16, lr=1e-2, copies=0, heads=1)
    report = run_embedding_model(
        tone_dataset, tmp_path / "teacher", emb, cache_dir=tmp_path / "cache", show_progress=False
    )
    # Five classes (four words and _silence_): chance is 0.2.
    assert report["best_val_accuracy"] >= 0.8
    assert report["test_accuracy"] >= 0.8
    path = tmp_path / "teacher" / MODEL_FILE
    saved = json.loads((tmp_path / "teacher/metrics.json").read_text())
    assert saved["labels"] == report["labels"]
    # The same folder is not overwritten.
    with pytest.raises(ValueError, match="already holds an embedding model"):
        run_embedding_model(tone_dataset, tmp_path / "teacher", emb)

    # The file loads back and agrees with the report on the test clips.
    teacher = EmbeddingModel(path, tmp_path / "cache")
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
    from speechlstm.train.embedding_model.frames import augmented_chunks

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


def test_embedding_model_trains_on_its_copies(stand_in, tmp_path, tone_dataset):
    from speechlstm.train.run import run_embedding_model

    cfg = _with_embedding(tiny_config(epochs=2), copies=2, epochs=3, hidden_size=8, batch_size=16)
    report = run_embedding_model(
        tone_dataset, tmp_path / "t", cfg, cache_dir=tmp_path / "c", show_progress=False
    )
    assert report["embedding"]["copies"] == 2 and report["embedding"]["seed"] == 0
    # Two heads by default (embedding.heads), each with its own copies.
    assert report["heads"] == 2 and {h["head"] for h in report["history"]} == {1, 2}
    # Three times the training clips: each epoch takes three times the steps.
    plain = run_embedding_model(
        tone_dataset,
        tmp_path / "p",
        _with_embedding(cfg, copies=0),
        cache_dir=tmp_path / "c",
        show_progress=False,
    )
    assert report["train_steps_per_epoch"] >= 3 * plain["train_steps_per_epoch"] - 2


def test_embedding_model_teacher_with_other_labels_or_other_files_is_refused(
    stand_in, tmp_path, tone_dataset
):
    from speechlstm.train.distill import clip_teacher_probs
    from speechlstm.train.embedding_model.model_file import MODEL_FILE
    from speechlstm.train.run import run_embedding_model

    run_embedding_model(
        tone_dataset,
        tmp_path / "t",
        _with_embedding(tiny_config(), epochs=1, hidden_size=8, copies=0, heads=1),
        cache_dir=tmp_path / "cache",
        show_progress=False,
    )
    path = str(tmp_path / "t" / MODEL_FILE)
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
    assert last.sources["feature_distill"]["weight"].shape == (96, 48)
    # Resuming continues with the projector; the exported model is the recognizer alone.
    run_training(
        tone_dataset, tmp_path / "fd", dataclasses.replace(with_fd), resume=True,
        cache_dir=tmp_path / "cache", show_progress=False,
    )  # fmt: skip
    result = export(tmp_path / "fd/best.pt", tmp_path / "fd.onnx")
    assert result.max_abs_diff < 1e-4
    assert len(OnnxRecognizer(result.path).labels) == 5


def test_train_frontend_embedding_reads_its_own_layered_section_and_records_what_ran(
    stand_in, tmp_path, tone_dataset
):
    """`train --frontend embedding`: [embedding] layered like every section
    (recipe, then --set, then the flags), the copies drawn with the recipe's
    [augment], and config.toml holding the settings that ran, not an MFCC model."""
    from typer.testing import CliRunner

    from cli.main import app
    from speechlstm.config_text import load_toml, read_toml

    runner = CliRunner()
    recipe = Path(__file__).resolve().parent.parent / "recipes/embedding.recipe.toml"
    args = ["train", str(tone_dataset), "--frontend", "embedding", "--config", str(recipe)]
    args += ["--set", "embedding.epochs=3", "--set", "embedding.hidden_size=4", "--hidden", "8"]
    args += ["--set", "train.embedding_copies=1", "--set", "embedding.heads=1"]  # the old name too
    args += ["--no-progress", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "e")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = read_toml(tmp_path / "e/config.toml", "config")
    assert set(saved) == {"features", "augment", "train", "data", "embedding"}
    assert saved["train"] == {"seed": 0}
    emb = load_toml(tmp_path / "e/config.toml").embedding
    assert (emb.epochs, emb.hidden_size, emb.copies, emb.heads) == (3, 8, 1, 1)
    aug = load_toml(tmp_path / "e/config.toml").augment
    assert aug.speed == 0.1 and aug.reverb_prob == 0.5  # the recipe's, not a hidden swap
    metrics = json.loads((tmp_path / "e/metrics.json").read_text())
    assert metrics["embedding"]["epochs"] == 3 and len(metrics["history"]) == 3
    # An MFCC setting given to it is refused by name, with the section it means.
    refused = runner.invoke(
        app, [*args[:4], "--set", "train.epochs=5", "--out", str(tmp_path / "x")]
    )
    assert refused.exit_code == 2 and "embedding.epochs" in refused.output


def test_old_configs_naming_the_embedding_settings_in_train_still_load(tmp_path):
    from speechlstm.config import EmbeddingConfig, RunConfig
    from speechlstm.config_text import apply_overrides, from_dict, load_toml, to_dict

    old = to_dict(RunConfig())  # a config.toml or checkpoint from before [embedding]
    del old["embedding"]
    old["train"] |= {"embedding_copies": 0, "embedding_heads": 1}
    assert from_dict(RunConfig, old).embedding == EmbeddingConfig(copies=0, heads=1)
    (tmp_path / "old.toml").write_text("[train]\nembedding_copies = 2\n[embedding]\ncopies = 5\n")
    with pytest.raises(ValueError, match="train.embedding_copies=2 .*embedding.copies=5"):
        load_toml(tmp_path / "old.toml")
    assert apply_overrides(RunConfig(), {"train.embedding_heads": "3"}).embedding.heads == 3
    # An exported model's training summary holds [train] alone: the old keys are
    # dropped there (the shipped models were exported before the section existed).
    from speechlstm.config import TrainConfig

    summary = {**to_dict(TrainConfig()), "embedding_copies": 3, "embedding_heads": 2}
    assert from_dict(TrainConfig, summary, where="training.train.", retired="drop") == TrainConfig()


def _model_file(path: Path, labels=("yes", "no"), record_edit=None, tensors_edit=None) -> Path:
    """An embedding-model file as `train --frontend embedding` writes one (an
    untrained head), its settings or tensors edited the way a tampered file is."""
    from safetensors.torch import save_file

    from speechlstm.config import EmbeddingConfig
    from speechlstm.train.embedding_model.head import build_head
    from speechlstm.train.embedding_model.model_file import FORMAT, SETTINGS_KEY, settings_record

    ecfg = EmbeddingConfig(heads=1, copies=0)
    record = settings_record(ecfg, seed=0)
    tensors = {k: v.contiguous() for k, v in build_head(len(labels), ecfg).state_dict().items()}
    if record_edit:
        record_edit(record)
    if tensors_edit:
        tensors_edit(tensors)
    meta = {"format": FORMAT, "labels": json.dumps(list(labels)), SETTINGS_KEY: json.dumps(record)}
    save_file(tensors, str(path), metadata=meta)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "what, edit, expected",
    [
        ("unknown setting", {"record_edit": lambda r: r.update(lookback_ms=300)}, "unknown"),
        ("absurd units", {"record_edit": lambda r: r.update(hidden_size=10**9)}, "at most"),
        ("more heads", {"record_edit": lambda r: r.update(heads=8)}, "lacks tensors"),
        ("a tensor gone", {"tensors_edit": lambda t: t.pop("head.weight")}, "lacks tensors"),
        (
            "a tensor added",
            {"tensors_edit": lambda t: t.update(x=t["head.bias"].clone())},
            "unknown",
        ),
        ("larger units", {"record_edit": lambda r: r.update(hidden_size=4096)}, "resized"),
        ("5,000 labels", {"labels": [f"w{i}" for i in range(5000)]}, "classes"),
        ("a control label", {"labels": ["yes", "n\x1bo"]}, "class name"),
    ],
)
def test_a_tampered_embedding_model_file_is_refused_in_one_line(tmp_path, what, edit, expected):
    """Unknown keys, missing or extra tensors and absurd sizes: one line naming
    the file, before any tensor its numbers ask for is allocated."""
    from speechlstm.train.embedding_model.model_file import EmbeddingModel

    path = _model_file(tmp_path / "teacher.safetensors", **edit)
    with pytest.raises(ValueError, match=expected) as caught:
        EmbeddingModel(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
def test_an_untampered_embedding_model_file_loads(stand_in, tmp_path):
    from speechlstm.train.embedding_model.model_file import EmbeddingModel

    path = _model_file(tmp_path / "teacher.safetensors")
    with pytest.raises(ValueError, match="other embedding model files"):
        EmbeddingModel(path)  # its digest is not the installed embedding's
    from speechlstm.train.embedding import SpeechEmbedding
    from speechlstm.train.embedding_model import model_file

    digest = SpeechEmbedding().digest
    original = model_file.EmbeddingModel._metadata
    model = None
    try:
        model_file.EmbeddingModel._metadata = lambda self: {
            **original(self),
            "embedding_digest": digest,
        }
        model = EmbeddingModel(path)
    finally:
        model_file.EmbeddingModel._metadata = original
    assert model.labels == ["yes", "no"] and model.cfg.heads == 1
    assert model.logits(_clips(("yes", "no"))).shape == (2, 2)
