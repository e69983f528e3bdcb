"""The speech-embedding front-end as a model users run (train/frontend_export.py,
detect/embedding_stream.py), on the stand-in embedding (stand_in_embedding.py): export
of an embedding-model run into one ONNX graph, clips through it, streams one embedding
frame per hop."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import tiny_config
from stand_in_embedding import build_stand_in
from typer.testing import CliRunner

from speechlstm.cli.main import app
from speechlstm.testing.synth_audio import SR, tone_word

pytestmark = pytest.mark.train
runner = CliRunner()


@pytest.fixture(scope="module")
def embedding_run(tmp_path_factory, tone_dataset):
    from speechlstm.config import EmbeddingConfig
    from speechlstm.train.run import run_embedding_model

    folder = build_stand_in(tmp_path_factory.mktemp("embedding"))
    out = tmp_path_factory.mktemp("runs") / "embedding"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEECHLSTM_EMBEDDING_DIR", str(folder))
        # Two heads, as embedding.heads draws by default: one graph averages them.
        small = EmbeddingConfig(epochs=15, hidden_size=16, batch_size=16, lr=1e-2, copies=0)
        cfg = dataclasses.replace(tiny_config(), embedding=small)
        run_embedding_model(tone_dataset, out, cfg, cache_dir=None, show_progress=False)
        yield out


@pytest.fixture(scope="module")
def embedding_model(embedding_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "embedding.onnx"
    result = runner.invoke(app, ["export", str(embedding_run), "-o", str(path)])
    assert result.exit_code == 0, result.output
    assert "speech-embedding front-end" in result.output
    return path


def test_export_joins_embedding_and_head_and_matches_the_torch_model(
    embedding_run, embedding_model
):
    import torch

    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.train.embedding_model.model_file import EmbeddingModel

    rec = OnnxRecognizer(embedding_model)
    assert rec.description.frontend == "embedding"
    assert "CC BY-NC-SA" in rec.description.frontend_credit
    assert rec.description.detector.hop_ms == 80.0
    words = ("yes", "no", "up", "down")
    clips = np.stack([tone_word(w, rng=np.random.default_rng(i)) for i, w in enumerate(words)])
    # The clips as 16-bit audio: what the model trained on, and what a file holds.
    ints = np.round(clips * 32768).clip(-32768, 32767).astype(np.int16)
    got = rec.predict(ints.astype(np.float32) / 32768)
    # The graph computes what the torch model computes on the same int16 clip.
    trained = EmbeddingModel(embedding_run / "teacher.safetensors", cache_dir=embedding_run)
    with torch.no_grad():
        frames = torch.from_numpy(trained.embedder.embed(ints))
        want = torch.softmax(trained.head.eval()(frames), -1).numpy()
    np.testing.assert_allclose(got, want, atol=2e-4)
    # The model's probabilities are its two heads' mean.
    members = trained.head.members
    assert len(members) == 2
    with torch.no_grad():
        each = [torch.softmax(m.eval()(frames), -1).numpy() for m in members]
    np.testing.assert_allclose(want, np.mean(each, axis=0), atol=1e-6)
    assert np.abs(each[0] - each[1]).max() > 1e-3  # two seeds, two heads
    # And it learned the words: 12 fresh takes, chance is 0.2. (The stand-in
    # embedding is weak, so a few takes may go astray; 9 of 12 were right here.)
    takes = [(w, tone_word(w, rng=np.random.default_rng(100 + i))) for i, w in enumerate(words * 3)]
    heard = rec.predict(np.stack([clip for _, clip in takes])).argmax(1)
    right = sum(rec.labels[k] == w for k, (w, _) in zip(heard, takes))
    assert right >= 8, f"{right}/12 takes right"
    metrics = json.loads((embedding_run / "metrics.json").read_text())
    assert rec.description.training.best_val_accuracy == metrics["best_val_accuracy"]


def test_info_names_the_embeddings_source_and_terms(embedding_model):
    result = runner.invoke(app, ["info", str(embedding_model)])
    assert result.exit_code == 0, result.output
    assert "speech embedding" in result.output
    assert "licence:" in result.output and "openwakeword 0.4.0" in result.output


def test_export_of_an_embedding_run_refuses_int8(embedding_run, tmp_path):
    result = runner.invoke(
        app, ["export", str(embedding_run), "-o", str(tmp_path / "m.onnx"), "--int8"]
    )
    assert result.exit_code != 0
    assert "fp32" in result.output
    assert not (tmp_path / "m.onnx").exists()


class _Counting:
    """An onnxruntime session that counts its runs and the rows it is given."""

    def __init__(self, session):
        self.session, self.calls, self.rows = session, 0, 0

    def run(self, outputs, feeds):
        self.calls += 1
        self.rows += len(next(iter(feeds.values())))
        return self.session.run(outputs, feeds)


def test_a_stream_carries_its_state_exactly_as_the_clip_graph_computes(embedding_model):
    """The stand-in's mel frames depend on their own 160 samples only, so a stream
    whose last 16 embedding windows line up with a clip's gives the clip's answer
    exactly; a stream that re-ran or dropped a frame would not."""
    from speechlstm.detect.embedding_stream import EmbeddingStream
    from speechlstm.runtime import OnnxRecognizer

    rec = OnnxRecognizer(embedding_model)
    stream = EmbeddingStream(embedding_model)
    for i, word in enumerate(("down", "yes")):
        clip = tone_word(word, rng=np.random.default_rng(i))
        want = rec.predict_clip(clip)
        # The clip centred in 2 s, as the graph pads it, after 160 samples: the
        # 25th hop's window then ends where the graph's 16th window ends.
        centred = np.zeros(32_000, np.float32)
        centred[8_000:24_000] = clip
        audio = np.concatenate([np.full(160, 0.01, np.float32), centred])
        stream.reset()
        steps = [stream.step(audio[k : k + 1280]) for k in range(0, 25 * 1280, 1280)]
        np.testing.assert_allclose(steps[-1], want, atol=1e-5)
        # One hop earlier is another window: not the clip's answer.
        assert np.abs(steps[-2] - want).max() > 1e-3


def test_the_detector_runs_one_embedding_frame_a_hop(embedding_model):
    from speechlstm.detect.stream import DetectorConfig, StreamingDetector, detect_file
    from speechlstm.runtime import OnnxRecognizer

    rec = OnnxRecognizer(embedding_model)
    det = StreamingDetector(rec, DetectorConfig(threshold=0.5, hop_ms=100, gate=False))
    stream = det.inference.stream  # hop_inference.EmbeddingFrames: the model's own way
    assert det.hop == 1280 and det.cfg.hop_ms == 80  # 80 ms whatever the config says
    rng = np.random.default_rng(5)
    gap = (rng.standard_normal(SR) * 0.003).astype(np.float32)
    audio = np.concatenate([gap] + [np.concatenate([tone_word(w), gap]) for w in ("down", "yes")])
    embed = stream.embed = _Counting(stream.embed)
    mel = stream.mel = _Counting(stream.mel)
    found = detect_file(det, audio)
    hops = det.stats.hops
    assert hops == (len(audio) + SR // 2) // 1280  # the stream and the flush's half window
    # One embedding window and one short mel call a hop, never 2 s of audio again.
    assert embed.calls == hops and embed.rows == hops
    assert mel.calls == hops
    # The answers do not depend on how the audio is chunked.
    again = detect_file(det, audio, chunk_samples=777)
    assert [(d.label, d.end_s) for d in again] == [(d.label, d.end_s) for d in found]
    assert embed.calls == 2 * hops


def test_the_shipped_verifier_is_stripped_and_composed_back_exactly(
    embedding_model, tmp_path, monkeypatch
):
    """strip() leaves only our graph and head; compose() with the installed
    embedding files gives the built model's probabilities; another embedding is
    refused by its sha256."""
    import onnx

    from speechlstm import shipped_verifier as sv
    from speechlstm.runtime import OnnxRecognizer

    head = tmp_path / "head.onnx"
    record = sv.strip(embedding_model, head)
    stripped = onnx.load(str(head))
    names = [t.name for t in stripped.graph.initializer]
    assert not any(n.startswith(("mel/", "emb/")) for n in names)
    assert record["mel"]["tensors"] and record["emb"]["tensors"]
    assert head.stat().st_size < embedding_model.stat().st_size
    composed = tmp_path / "composed.onnx"
    composed.write_bytes(sv.compose(head))
    built, again = OnnxRecognizer(embedding_model), OnnxRecognizer(composed)
    assert again.description == built.description
    rng = np.random.default_rng(0)
    clips = np.stack([tone_word(w, rng=rng) for w in ("yes", "no", "up", "down")])
    np.testing.assert_allclose(again.predict(clips), built.predict(clips), atol=1e-5)
    # As the shipped asset: composed once into the cache, with the pair's settings.
    assets = tmp_path / "assets"
    assets.mkdir()
    head.rename(assets / "sc12.verifier.head.onnx")
    (assets / "sc12.verifier.detector.toml").write_text("[detector]\nthreshold = 0.61\n")
    monkeypatch.setattr(sv, "ASSETS_DIR", assets)
    monkeypatch.setenv("SPEECHLSTM_CACHE", str(tmp_path / "cache"))
    path = sv.verifier_path("sc12")
    assert path.parent == tmp_path / "cache" and sv.verifier_path("sc12") == path
    cfg, threshold = sv.pair_settings("sc12")
    assert cfg.threshold == 0.61 and threshold == 0.8
    # Another embedding (the stand-in rebuilt with other weights) is refused by name.
    other = build_stand_in(tmp_path / "other", seed=1)
    monkeypatch.setenv("SPEECHLSTM_EMBEDDING_DIR", str(other))
    with pytest.raises(sv.VerifierUnavailable, match="sha256 differs"):
        sv.compose(assets / "sc12.verifier.head.onnx")
