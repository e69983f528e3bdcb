"""Round 3 of the hostile-input families (issue 46), second part: results that
cannot mix (score --resume with another model), resume means the same run
(train --resume with other data), memory flat on long audio (data mine and the
training bank stream it), no hang on special files (teacher files, manifests,
downloads that stall)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from speechlstm.testing.cli import run_cli
from speechlstm.testing.synth_audio import SR, tone_word

_cli = run_cli  # the command line as a user runs it


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.fixture(scope="module")
def changed_model(onnx_model, tmp_path_factory) -> Path:
    """The same graph with another description: another file, another sha256."""
    import onnx

    m = onnx.load(str(onnx_model))
    m.doc_string = "another model"
    path = tmp_path_factory.mktemp("changed") / "changed.onnx"
    onnx.save(m, str(path))
    return path


# Family 3: results that cannot mix -----------------------------------------


@pytest.mark.slow
def test_score_resume_with_another_model_is_refused_naming_both(
    onnx_model, changed_model, tmp_path
):
    clips = []
    for i in range(4):
        clips.append(tmp_path / f"c{i}.wav")
        sf.write(clips[-1], tone_word("yes"), SR)
    out = tmp_path / "out.csv"
    first = _cli("score", *clips[:2], "-m", onnx_model, "-o", out, "--no-progress")
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    mixed = _cli("score", *clips, "-m", changed_model, "-o", out, "--resume", "--no-progress")
    err = mixed.stderr.decode()
    assert mixed.returncode == 2, err
    assert str(onnx_model) in err and str(changed_model) in err and "mix" in err
    assert "Traceback" not in err and "unexpected" not in err
    assert out.read_bytes() == before  # not a byte appended
    # The same model resumes; the rows then come from one model.
    same = _cli("score", *clips, "-m", onnx_model, "-o", out, "--resume", "--no-progress")
    assert same.returncode == 0, same.stderr
    assert len(_rows(out)) == 4


def test_an_interrupted_shard_is_not_resumed_with_another_model(
    onnx_model, changed_model, tmp_path
):
    """A shard run has no receipt until it finishes; its model record is written
    when it starts, so an interrupted shard is checked too."""
    for i in range(6):
        sf.write(tmp_path / f"c{i}.wav", tone_word("up"), SR)
    clips = sorted(tmp_path.glob("c*.wav"))
    part = tmp_path / "part0.csv"
    first = _cli("score", *clips, "-m", onnx_model, "-o", part, "--shard", "0/1", "--no-progress")
    assert first.returncode == 0, first.stderr
    (tmp_path / "part0.csv.shard.json").unlink()  # as if it had been killed
    again = _cli(
        "score", *clips, "-m", changed_model, "-o", part, "--shard", "0/1", "--resume",
        "--no-progress",
    )  # fmt: skip
    err = again.stderr.decode()
    assert again.returncode == 2, err
    assert str(onnx_model) in err and str(changed_model) in err


@pytest.mark.slow
def test_a_merged_file_remembers_its_model_and_a_foreign_record_is_never_replaced(
    onnx_model, changed_model, tmp_path
):
    for i in range(4):
        sf.write(tmp_path / f"c{i}.wav", tone_word("no"), SR)
    clips = sorted(tmp_path.glob("c*.wav"))
    parts = []
    for k in range(2):
        parts.append(tmp_path / f"p{k}.csv")
        r = _cli("score", *clips, "-m", onnx_model, "-o", parts[-1], "--shard", f"{k}/2",
                 "--no-progress")  # fmt: skip
        assert r.returncode == 0, r.stderr
    merged = tmp_path / "all.csv"
    r = _cli("score", "--merge", *parts, "-o", merged)
    assert r.returncode == 0, r.stderr
    r = _cli("score", *clips, "-m", changed_model, "-o", merged, "--resume", "--no-progress")
    assert r.returncode == 2 and str(onnx_model) in r.stderr.decode(), r.stderr
    # A user's file at the record's name is not ours: refused, left as it was.
    out = tmp_path / "mine.csv"
    record = tmp_path / "mine.csv.model.json"
    record.write_text("my notes\n")
    r = _cli("score", clips[0], "-m", onnx_model, "-o", out, "--no-progress")
    err = r.stderr.decode()
    assert r.returncode == 2 and "not a speechlstm model record" in err, err
    assert record.read_text() == "my notes\n"


# Family 9: resume means the same run -----------------------------------------


def test_same_source_is_one_path_in_one_normal_form(tmp_path, monkeypatch):
    from speechlstm.files import same_source

    data = tmp_path / "data" / "sc"
    data.mkdir(parents=True)
    (tmp_path / "link").symlink_to(data)
    monkeypatch.chdir(tmp_path)
    for spelling in ("data/sc", "./data/sc/", "data//sc", str(data), "link", "data/../data/sc"):
        assert same_source(spelling, "data/sc"), spelling
    (tmp_path / "other").mkdir()
    assert not same_source("other", "data/sc")
    assert not same_source("gone", "data/sc")


@pytest.mark.train
@pytest.mark.slow
def test_train_resume_with_other_data_is_refused_naming_both(trained_run, tone_dataset, tmp_path):
    """`train OTHER --resume --out RUN` used to continue silently with the run's
    own data; now it is refused, both sources named, before anything is written.
    The run's data under another spelling resumes."""
    import shutil

    from speechlstm.train.run import run_training

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy2(trained_run / "last.pt", run / "last.pt")
    other = tmp_path / "other"
    (other / "yes").mkdir(parents=True)
    sf.write(other / "yes" / "a.wav", tone_word("yes"), SR)
    result = _cli("train", other, "--resume", "--out", run, "--no-progress", timeout=300)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert str(other) in err and str(tone_dataset) in err and "Traceback" not in err
    assert sorted(p.name for p in run.iterdir()) == ["last.pt"]  # nothing written
    # The same data, spelt another way, is the same run: it resumes (and, the
    # run being finished, only writes its report).
    report = run_training(f"{tone_dataset}/./", run, None, resume=True, show_progress=False)
    assert report["test_clips"] > 0


@pytest.mark.slow
@pytest.mark.train
def test_train_resume_accepts_the_same_data_moved_and_refuses_other_clips(
    trained_run, tone_dataset, tmp_path
):
    """A dataset moved to another folder is the same data by content: `--resume`
    names it anew and goes on. One clip changed is other data: refused, both
    named, nothing written."""
    import shutil

    from speechlstm.train.checkpoint import load

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy2(trained_run / "last.pt", run / "last.pt")
    assert load(run / "last.pt").summary["data_fingerprint"]
    changed = tmp_path / "changed"
    shutil.copytree(tone_dataset, changed)
    clip = sorted((changed / "yes").glob("*.wav"))[0]
    sf.write(clip, tone_word("up") * 0.5, SR)
    result = _cli("train", changed, "--resume", "--out", run, "--no-progress", timeout=300)
    err = result.stderr.decode()
    assert result.returncode == 2 and "other clips" in err, err
    assert str(changed) in err and str(tone_dataset) in err and "Traceback" not in err
    assert sorted(p.name for p in run.iterdir()) == ["last.pt"]  # nothing written
    moved = tmp_path / "moved"
    shutil.copytree(tone_dataset, moved)
    result = _cli("train", moved, "--resume", "--out", run, "--no-progress", timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    assert f"on {moved}" in result.stderr.decode()
    report = json.loads((run / "metrics.json").read_text())
    assert report["summary"]["source"] == str(moved)  # the run goes on under the new name


@pytest.mark.slow
@pytest.mark.train
@pytest.mark.parametrize("device", ["cuda:999", "tpu", "cuda:x"])
def test_train_refuses_a_device_it_cannot_use_before_any_work(tone_dataset, tmp_path, device):
    """Family 4: a --device this machine lacks (or no device at all) is refused
    before the data is prepared or anything is written, not after."""
    out = tmp_path / "run"
    result = _cli("train", tone_dataset, "--device", device, "--out", out, "--no-progress")
    err = result.stderr.decode()
    assert result.returncode == 2 and "train.device" in err, err
    assert "Traceback" not in err and "unexpected" not in err
    assert "clips per split" not in err  # the data was never prepared
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert written in ([], [".speechlstm.lock"])  # at most the folder's lock


# Family 6: memory flat on long audio -----------------------------------------


def _long_recording(path: Path, seconds: float, rate: int = SR, channels: int = 1, words=()):
    """Quiet noise, written block by block (16-bit), with tone words at the given
    seconds; never held whole in this process."""
    import numpy as np

    rng = np.random.default_rng(0)
    word = tone_word("up", rng=np.random.default_rng(1))
    if rate != SR:
        import soxr

        word = soxr.resample(word, SR, rate)
    total, block = int(seconds * rate), 10 * rate
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16") as f:
        for b0 in range(0, total, block):
            x = rng.standard_normal((min(block, total - b0), channels)) * 0.003
            for at in (round(s * rate) for s in words):
                lo, hi = max(b0, at), min(b0 + len(x), at + len(word))
                if lo < hi:
                    x[lo - b0 : hi - b0] += word[lo - at : hi - at, None]
            f.write(x.astype(np.float32))


def test_long_files_are_mined_block_by_block_with_the_same_windows(
    onnx_model, tmp_path, monkeypatch
):
    """A file over audio.STREAM_ABOVE_BYTES is mined as it streams (a word across
    a block boundary included): the same windows, byte for byte, as decoding it
    whole."""
    from speechlstm.audio import is_large
    from speechlstm.detect import mining
    from speechlstm.runtime import OnnxRecognizer

    path = tmp_path / "negatives.wav"
    _long_recording(path, 70, words=(12.2, 19.7, 64.0))
    assert is_large(path)
    rec = OnnxRecognizer(onnx_model)
    streamed, errors = mining.mine(rec, [str(path)], tmp_path / "streamed")
    assert not errors and len(streamed) == 3
    monkeypatch.setattr(mining, "is_large", lambda p: False)
    whole, _ = mining.mine(rec, [str(path)], tmp_path / "whole")
    assert [m.path.name for m in streamed] == [m.path.name for m in whole]
    for a, b in zip(streamed, whole):
        assert a.path.read_bytes() == b.path.read_bytes()


def test_the_training_bank_reads_a_long_file_as_it_streams(tmp_path):
    """The bank keeps a long file's loudest window, the noise bank its first
    minute: the same samples as decoding it whole, holding a block at a time."""
    import numpy as np

    from speechlstm.audio import crop_loudest, load_audio, load_head, load_loudest

    path = tmp_path / "long.wav"
    _long_recording(path, 70, words=(49.6,))
    whole = load_audio(path)
    assert np.array_equal(load_loudest(path, SR), crop_loudest(whole, SR))
    assert np.abs(load_loudest(path, SR)).max() > 0.1  # the word's window, not the noise's
    assert np.array_equal(load_head(path, 60 * SR), whole[: 60 * SR])
    assert np.array_equal(load_head(path, 80 * SR), whole)


@pytest.mark.slow
def test_mining_and_the_bank_stay_flat_on_20_minutes_of_48khz_stereo(onnx_model, tmp_path):
    """20 minutes of 48 kHz stereo (230 MB of 16-bit WAV) decoded whole is about
    a gigabyte resident (954 MB for `data mine` before it streamed); streamed,
    `data mine` and the training bank stay near `live`'s 110 MB."""
    path = tmp_path / "long.wav"
    _long_recording(path, 20 * 60, rate=48000, channels=2)
    probe = (
        "import resource, subprocess, sys; "
        "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE); "
        "sys.stderr.buffer.write(r.stderr); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    bank = (
        "import sys; from speechlstm.data.bank import load_bank; "
        "b = load_bank([sys.argv[1]] * 2, 16000, 16000, None, workers=2); "
        "sys.exit(0 if b.ok.all() else 1)"
    )
    for what, command in (
        ("data mine", ["-m", "speechlstm", "data", "mine", path, "-m", onnx_model, "-o", tmp_path]),
        ("training bank", ["-c", bank, path]),
    ):
        run = subprocess.run(
            [sys.executable, "-c", probe, sys.executable, *map(str, command)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        code, peak_kb = map(int, run.stdout.split())
        assert code == 0, run.stderr
        print(f"{what}: peak RSS {peak_kb / 1024:.1f} MB")
        assert peak_kb / 1024 < 400, f"{what}: peak RSS {peak_kb / 1024:.0f} MB"


# Family 7: no hang on special files ------------------------------------------


def _finishes(fn, seconds: float = 30):
    """fn()'s result or exception; fails the test if it is still running after
    `seconds` (it would be blocked on a FIFO for ever)."""
    import threading

    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    assert not worker.is_alive(), f"{fn} hung"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_a_dataset_or_manifest_that_is_a_fifo_or_a_device_is_refused_by_name(tmp_path):
    import os

    from speechlstm.data.datasets import DatasetError, discover

    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match="FIFO"):
        _finishes(lambda: discover(fifo))
    zero = tmp_path / "zero.csv"
    zero.symlink_to("/dev/zero")
    with pytest.raises(DatasetError, match="character device"):
        _finishes(lambda: discover(zero))


def test_a_manifest_listing_fifos_and_devices_prepares_without_hanging(tmp_path):
    """Clips and background noise listed as a FIFO or /dev/zero are refused by
    name while the data is prepared; the rest of the run's data is kept."""
    import dataclasses
    import os

    from speechlstm.config import RunConfig
    from speechlstm.data.prepare import prepare

    rows = ["path,label,split"]
    for word in ("yes", "no"):
        for split in ("train", "validation", "test"):
            path = tmp_path / f"{word}_{split}.wav"
            sf.write(path, tone_word(word), SR)
            rows.append(f"{path.name},{word},{split}")
    os.mkfifo(tmp_path / "pipe.wav")
    rows += ["pipe.wav,yes,train", "/dev/zero,no,train", "pipe.wav,_background_noise_"]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    cfg = RunConfig()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, words=("yes", "no")))
    data = _finishes(lambda: prepare(manifest, cfg.data, cfg.features, 0, cache_dir=None))
    assert "FIFO" in data.errors[str(tmp_path / "pipe.wav")]
    assert "character device" in data.errors["/dev/zero"]


@pytest.mark.train
@pytest.mark.slow
def test_teacher_checkpoint_and_encoder_files_that_are_fifos_are_refused(tmp_path, tone_dataset):
    """Any file a run reads later (teachers, last.pt on --resume, an encoder)
    gets the regular-file check: refused by name at once, never a hang. A
    run's teachers are checked before its data is prepared."""
    import dataclasses
    import functools
    import os

    from conftest import tiny_config

    from speechlstm.files import FileRefused
    from speechlstm.train import checkpoint
    from speechlstm.train.embedding_model.model_file import EmbeddingModel
    from speechlstm.train.encoder import EncoderError, load_encoder
    from speechlstm.train.run import run_training

    fifo = tmp_path / "teacher.safetensors"
    os.mkfifo(fifo)
    pt = tmp_path / "teacher.pt"
    os.mkfifo(pt)
    with pytest.raises(ValueError, match="FIFO"):
        _finishes(lambda: EmbeddingModel(fifo))
    with pytest.raises(checkpoint.CheckpointError, match="FIFO"):
        _finishes(lambda: checkpoint.load(pt))
    with pytest.raises(EncoderError, match="FIFO"):
        _finishes(lambda: load_encoder(fifo))
    base = tiny_config(epochs=1)
    for teacher in (fifo, pt, Path("/dev/zero"), tmp_path / "missing.pt"):
        train = dataclasses.replace(base.train, teacher=(str(teacher),))
        out = tmp_path / f"run_{teacher.name}"
        run = functools.partial(
            run_training, tone_dataset, out, dataclasses.replace(base, train=train)
        )
        with pytest.raises(FileRefused, match=str(teacher)):
            _finishes(run)
        assert not (out / "config.toml").exists()  # refused before anything was written
    # The resume path: last.pt is a FIFO.
    (tmp_path / "run_r").mkdir()
    os.mkfifo(tmp_path / "run_r" / "last.pt")
    with pytest.raises(checkpoint.CheckpointError, match="FIFO"):
        _finishes(lambda: run_training(tone_dataset, tmp_path / "run_r", base, resume=True))


class _StallingServer:
    """An HTTP server on 127.0.0.1 whose body comes as `mode` says: "stall" sends
    the first `first` bytes and then nothing (the connection held open),
    "trickle" sends 16 bytes every 0.1 s, "slow" 4 KiB every 0.05 s, "ok" all."""

    def __init__(self, payload: bytes):
        import http.server
        import threading
        import time

        self.payload, self.mode, self.first = payload, "ok", 20_000
        self.stop = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                else:
                    self.send_response(200)
                body = outer.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if outer.mode == "ok":
                        self.wfile.write(body)
                        return
                    if outer.mode == "stall":
                        self.wfile.write(body[: outer.first])
                        self.wfile.flush()
                        outer.stop.wait(30)
                        return
                    step, pause = (16, 0.1) if outer.mode == "trickle" else (4096, 0.05)
                    for i in range(0, len(body), step):
                        if outer.stop.is_set():
                            return
                        self.wfile.write(body[i : i + step])
                        self.wfile.flush()
                        time.sleep(pause)
                except OSError:
                    return  # the client gave up: as it should

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/a.bin"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stalling():
    import os

    server = _StallingServer(os.urandom(200_000))
    yield server
    server.close()


@pytest.mark.parametrize("mode", ["stall", "trickle"])
def test_a_download_that_stalls_ends_with_one_line_and_resumes(stalling, tmp_path, mode):
    """No progress (or less than 1 KiB) for the stall timeout ends the transfer
    with a clear error, however the server keeps the connection alive; the
    partial file is kept and the next run resumes it."""
    import hashlib
    import time

    from speechlstm.data.download import DownloadError, download

    digest = hashlib.sha256(stalling.payload).hexdigest()
    dest = tmp_path / "a.bin"
    stalling.mode = mode
    started = time.monotonic()
    with pytest.raises(DownloadError, match="stalled.*run again to resume"):
        _finishes(lambda: download(stalling.url, dest, digest, stall_s=1.0), 20)
    assert time.monotonic() - started < 10
    part = tmp_path / "a.bin.part"
    kept = part.stat().st_size
    assert 0 < kept < len(stalling.payload)
    stalling.mode = "ok"
    assert download(stalling.url, dest, digest, stall_s=1.0).read_bytes() == stalling.payload
    assert not part.exists()


def test_a_download_past_its_deadline_ends_and_keeps_the_part(stalling, tmp_path):
    """A transfer that keeps moving (4 KiB every 50 ms: no stall) but would take
    too long ends at its overall deadline, the part kept for the next run."""
    import hashlib

    from speechlstm.data.download import DownloadError, download

    digest = hashlib.sha256(stalling.payload).hexdigest()
    stalling.mode = "slow"
    with pytest.raises(DownloadError, match="deadline.*run again to resume"):
        _finishes(lambda: download(stalling.url, tmp_path / "a.bin", digest, deadline_s=0.5), 20)
    assert 0 < (tmp_path / "a.bin.part").stat().st_size < len(stalling.payload)


@pytest.mark.slow
def test_data_download_stall_is_one_line_from_the_command_line(stalling, tmp_path):
    import hashlib

    stalling.mode = "stall"
    digest = hashlib.sha256(stalling.payload).hexdigest()
    result = _cli("data", "download", "--url", stalling.url, "--sha256", digest, "--out", tmp_path,
                  "--stall-timeout", "1", timeout=60)  # fmt: skip
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "stalled" in err and "Traceback" not in err and "unexpected" not in err
    assert list(tmp_path.glob("*.part"))  # kept for the next run
    bad = _cli("data", "download", "--out", tmp_path, "--stall-timeout", "nan")
    assert bad.returncode == 2
