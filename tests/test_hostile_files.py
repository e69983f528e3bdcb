"""Hostile and careless input, round 2: outputs that are not ours, files that are not
regular files, names and bytes, tampered shard receipts, broken outputs, model
files that break the contract, training that diverges, odd corners.

Each test runs the real command (in a subprocess where a signal, a resource
limit or a closed stream is part of the case) and asserts the documented exit
code, one line naming the file, and that nothing that is not ours was touched.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechlstm.testing.synth_audio import tone_word

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def _cli(*args, cwd: Path, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "speechlstm", *map(os.fsencode, map(str, args))],
        capture_output=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
        **kw,
    )


def _err(result) -> str:
    err = result.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err and "unexpected" not in err, err
    return err


@pytest.fixture()
def work(tmp_path, onnx_model) -> Path:
    sf.write(tmp_path / "yes.wav", tone_word("yes"), 16000)
    sf.write(tmp_path / "no.wav", tone_word("no"), 16000)
    (tmp_path / "model.onnx").write_bytes(onnx_model.read_bytes())
    return tmp_path


# -- 2. files that are not regular files ----------------------------------------
def test_a_fifo_or_device_as_a_settings_file_is_refused_not_waited_on(tmp_path):
    from speechlstm.config_text import load_detector_toml, load_toml

    fifo = tmp_path / "settings.toml"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/zero"), Path("/dev/urandom")):
        for load in (load_toml, load_detector_toml):
            with pytest.raises(ValueError, match="must be a regular file") as info:
                load(target)
            assert str(target) in str(info.value)


@pytest.mark.train
@pytest.mark.slow
def test_train_and_export_refuse_a_fifo_settings_file(work, tone_dataset):
    os.mkfifo(work / "recipe.toml")
    for args in (
        ["train", tone_dataset, "--config", "recipe.toml", "--out", "r"],
        ["export", "nothing.pt", "-o", "m.onnx", "--detector", "/dev/zero"],
    ):
        result = _cli(*args, cwd=work, timeout=60)
        err = _err(result)
        assert result.returncode == 2 and "regular file" in err, err


def test_fifos_and_devices_as_audio_or_list_entries_are_error_rows(work):
    os.mkfifo(work / "pipe.wav")
    (work / "list.txt").write_bytes(b"yes.wav\npipe.wav\n/dev/zero\nno\x00pe.wav\nno.wav\n")
    result = _cli("score", "list.txt", "-m", "model.onnx", "-f", "jsonl", cwd=work, timeout=30)
    _err(result)
    assert result.returncode == 1  # some inputs failed, the others were scored
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    by_path = {Path(r["path"]).name: r for r in rows}
    assert by_path["yes.wav"]["error"] is None and by_path["no.wav"]["error"] is None
    assert "FIFO" in by_path["pipe.wav"]["error"]
    assert "character device" in by_path["zero"]["error"]
    assert "NUL" in by_path["no\x00pe.wav"]["error"]


def test_a_recursive_glob_does_not_follow_a_link_loop(work):
    (work / "a" / "b").mkdir(parents=True)
    sf.write(work / "a" / "b" / "deep.wav", tone_word("up"), 16000)
    os.symlink("..", work / "a" / "b" / "loop")
    os.symlink(work, work / "a" / "root")
    result = _cli("score", "**/*.wav", "-m", "model.onnx", "-f", "jsonl", cwd=work, timeout=30)
    _err(result)
    paths = [json.loads(line)["path"] for line in result.stdout.decode().splitlines()]
    assert sorted(paths) == ["a/b/deep.wav", "no.wav", "yes.wav"]


# -- 1. outputs that are not ours -----------------------------------------------
@pytest.mark.slow
def test_evaluate_refuses_a_users_report_before_evaluating_and_replaces_its_own(work):
    from speechlstm.testing.synth_audio import make_dataset

    data = make_dataset(work / "ds", speakers=4, takes=1)
    reports = work / "reports"
    reports.mkdir()
    (reports / "report.md").write_text("# my own notes\n\nkeep me\n")
    result = _cli("evaluate", data, "-m", "model.onnx", "-r", reports, cwd=work)
    err = _err(result)
    assert result.returncode == 2 and "report.md" in err and "--force" in err
    assert "accuracy" not in result.stdout.decode()  # refused before the work
    assert (reports / "report.md").read_text() == "# my own notes\n\nkeep me\n"
    (reports / "report.md").unlink()
    assert _cli("evaluate", data, "-m", "model.onnx", "-r", reports, cwd=work).returncode == 0
    first = (reports / "report.json").read_text()
    assert _cli("evaluate", data, "-m", "model.onnx", "-r", reports, cwd=work).returncode == 0
    assert json.loads((reports / "report.json").read_text()).keys() == json.loads(first).keys()
    (reports / "report.json").write_text('{"mine": 1}')
    assert _cli("evaluate", data, "-m", "model.onnx", "-r", reports, cwd=work).returncode == 2
    ok = _cli("evaluate", data, "-m", "model.onnx", "-r", reports, "--force", cwd=work)
    assert ok.returncode == 0


def test_evaluate_refuses_an_unwritable_report_folder_before_the_work(work, monkeypatch):
    from speechlstm.evaluation import check_report_dir
    from speechlstm.files import FileRefused

    target = work / "reports"
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == work else real_access(p, mode)
    )
    with pytest.raises(FileRefused, match="not writable"):
        check_report_dir(target)


def test_folder_lock_refuses_a_second_writer():
    import tempfile

    from speechlstm.files import FileRefused, FolderLock

    with (
        tempfile.TemporaryDirectory() as d,
        FolderLock(d),
        pytest.raises(FileRefused, match="another speechlstm process"),
    ):
        FolderLock(d)
    with tempfile.TemporaryDirectory() as d:
        FolderLock(d).release()
        FolderLock(d).release()  # released: taken again


def test_write_atomic_never_follows_a_planted_link(tmp_path):
    from speechlstm.files import write_atomic

    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "all.csv"
    # The old predictable temporary names, planted as links to the victim.
    for name in (".all.csv.merge.tmp", "all.tmp", ".all.csv.tmp"):
        os.symlink(victim, tmp_path / name)
    write_atomic(out, "path,label\n")
    assert victim.read_text() == "precious" and out.read_text() == "path,label\n"


# -- 3. names and bytes; 4. --merge trusts nothing ------------------------------
def test_merge_keeps_names_with_unicode_line_separators_whole(work):
    odd = ["form\x0cfeed.wav", "next\x85line.wav", "line\u2028sep.wav", "para\u2029sep.wav"]
    for name in odd:
        sf.write(work / name, tone_word("up"), 16000)
    whole = work / "whole.csv"
    assert _cli("score", ".", "-m", "model.onnx", "-o", whole, cwd=work).returncode == 0
    parts = []
    for k in range(2):
        part = work / f"p{k}.csv"
        assert _cli("score", ".", "-m", "model.onnx", "--shard", f"{k}/2", "-o", part, cwd=work)
        parts.append(part)
    merged = work / "merged.csv"
    result = _cli("score", "--merge", *parts, "-o", merged, cwd=work)
    assert result.returncode == 0, _err(result)
    import csv

    def rows(path):
        with open(path, newline="", encoding="utf-8") as fh:
            return sorted(tuple(r) for r in csv.reader(fh))

    assert rows(merged) == rows(whole)
    assert {Path(r[0]).name for r in rows(merged)} >= set(odd)


@FAST
@given(
    receipt=st.one_of(
        st.dictionaries(
            st.sampled_from(["shard", "count", "rows", "format"]),
            st.one_of(
                st.integers(-(10**15), 10**15),
                st.floats(allow_nan=True),
                st.text(max_size=5),
                st.none(),
                st.lists(st.integers(), max_size=2),
                st.booleans(),
            ),
        ),
        st.lists(st.integers(), max_size=3),
        st.text(max_size=20),
        st.integers(),
    )
)
def test_any_receipt_merges_or_is_refused_by_name(tmp_path_factory, receipt):
    from speechlstm.outputs import OutputError
    from speechlstm.shards import ShardError, merge

    d = tmp_path_factory.mktemp("receipt")
    part = d / "p.csv"
    part.write_text("path,label,score,top,duration_s,error\n")
    (d / "p.csv.shard.json").write_text(json.dumps(receipt))
    try:
        rows, count = merge([part], d / "out.csv")
    except (ShardError, OutputError) as exc:
        assert str(exc)
    else:
        assert count == 1 and rows == 0


def test_merge_refuses_absurd_counts_fast(tmp_path):
    from speechlstm.shards import ShardError, merge

    part = tmp_path / "p.csv"
    part.write_text("path,label,score,top,duration_s,error\n")
    receipt = {"shard": 0, "count": 10**12, "rows": 0, "format": "csv"}
    (tmp_path / "p.csv.shard.json").write_text(json.dumps(receipt))
    with pytest.raises(ShardError, match="count"):
        merge([part], tmp_path / "out.csv")


def test_file_names_with_terminal_escapes_are_shown_escaped(work):
    name = "evil\x1b[2J\x1b]0;pwned\x07.wav"
    sf.write(work / name, tone_word("yes"), 16000)
    result = _cli("transcribe", name, "missing\x1b[31m.wav", "-m", "model.onnx", cwd=work)
    assert b"\x1b" not in result.stdout and b"\x1b" not in result.stderr
    assert b"\\x1b[2J" in result.stdout and b"\\x1b[31m" in result.stderr


# -- 5. the output side -----------------------------------------------------------
def test_dev_full_and_a_fifo_as_output_are_refused_by_name(work):
    result = _cli("score", "yes.wav", "-m", "model.onnx", "-o", "/dev/full", cwd=work)
    assert result.returncode == 2 and "/dev/full" in _err(result)
    os.mkfifo(work / "out.csv")
    result = _cli("score", "yes.wav", "-m", "model.onnx", "-o", "out.csv", cwd=work, timeout=30)
    assert result.returncode == 2 and "out.csv" in _err(result)


def test_a_file_size_limit_is_one_line_naming_the_output(work):
    for i in range(30):
        sf.write(work / f"c{i:02d}.wav", tone_word("up"), 16000)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (600, 600))

    result = _cli("score", ".", "-m", "model.onnx", "-o", "big.csv", cwd=work, preexec_fn=limit)
    err = _err(result)
    assert result.returncode == 2 and "big.csv" in err and "cannot write" in err, err
    assert len(err.strip().splitlines()) <= 2
    assert 0 < (work / "big.csv").stat().st_size <= 600  # the rows before it are kept


def test_a_reader_that_closes_early_ends_quietly_and_a_closed_stdout_is_named(work):
    for i in range(40):
        sf.write(work / f"c{i:02d}.wav", tone_word("no"), 16000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "speechlstm", "transcribe", *sorted(os.listdir(work)), "-m",
         "model.onnx"],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception" not in err, err
    assert proc.returncode in (141, 1), proc.returncode
    result = subprocess.run(
        [sys.executable, "-m", "speechlstm", "transcribe", "yes.wav", "-m", "model.onnx"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        pass_fds=(), close_fds=True, timeout=60,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    err = _err(result)
    assert result.returncode == 2 and "standard output" in err, err


# -- 6. the model's contract ------------------------------------------------------
def _model(tmp_path: Path, name: str, in_type, in_shape, out_shape, extra_input=False,
           poison: str | None = None) -> Path:  # fmt: skip
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from speechlstm.testing.tiny_onnx import model_props

    n = 5
    inputs = [helper.make_tensor_value_info("waveform", in_type, in_shape)]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, 4]))
    nodes = [
        helper.make_node("Cast", ["waveform"], ["wf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["wf", "ax"], ["m"], keepdims=1),  # (B, 1)
        helper.make_node("Mul", ["m", "zeros"], ["z"]),  # (B, 5)
        helper.make_node("Add", ["z", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["soft"], axis=-1),
    ]
    last = "soft"
    if poison == "nan":
        nodes.append(helper.make_node("Div", ["z", "z"], ["nan"]))
        last = "nan"
    elif poison == "range":
        nodes.append(helper.make_node("Add", ["soft", "five"], ["big"]))
        last = "big"
    if out_shape is not None and len(out_shape) == 1:
        nodes.append(helper.make_node("ReduceSum", [last, "ax"], ["flat"], keepdims=0))
        last = "flat"
    nodes.append(helper.make_node("Identity", [last], ["probabilities"]))
    graph = helper.make_graph(
        nodes,
        "contract",
        inputs,
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, out_shape)],
        [
            numpy_helper.from_array(np.array([1], np.int64), "ax"),
            numpy_helper.from_array(np.zeros((1, n), np.float32), "zeros"),
            numpy_helper.from_array(np.arange(n, dtype=np.float32), "bias"),
            numpy_helper.from_array(np.array(5.0, np.float32), "five"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for key, value in model_props().items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / name
    onnx.save(model, path)
    return path


def test_models_that_break_the_contract_are_refused_at_load(tmp_path):
    from onnx import TensorProto

    from speechlstm.runtime import ModelError, OnnxRecognizer

    f32 = TensorProto.FLOAT
    cases = {
        "int16 input": (TensorProto.INT16, ["b", "s"], ["b", 5], False, "tensor(int16)"),
        "rank 3 input": (f32, ["b", 1, "s"], ["b", 5], False, "rank 3"),
        "extra input": (f32, ["b", "s"], ["b", 5], True, "state"),
        "rank 1 output": (f32, ["b", "s"], ["b"], False, "rank 1"),
        "absurd batch": (f32, [10**9, "s"], ["b", 5], False, "batch = 1000000000"),
        "absurd length": (f32, ["b", 7], ["b", 5], False, "samples = 7"),
    }
    for name, (in_type, in_shape, out_shape, extra, says) in cases.items():
        path = _model(tmp_path, name.replace(" ", "_") + ".onnx", in_type, in_shape,
                      out_shape, extra)  # fmt: skip
        with pytest.raises(ModelError, match=says.replace("(", r"\(").replace(")", r"\)")):
            OnnxRecognizer(path)
    ok = _model(tmp_path, "ok.onnx", f32, ["b", "s"], ["b", 5])
    probs = OnnxRecognizer(ok).predict(np.zeros((3, 16000), np.float32))
    assert probs.shape == (3, 5) and np.allclose(probs.sum(1), 1)


@pytest.mark.parametrize("poison,says", [("nan", "NaN"), ("range", "outside [0, 1]")])
def test_a_model_that_outputs_nonsense_is_an_error_not_a_label(tmp_path, poison, says):
    from onnx import TensorProto

    path = _model(tmp_path, f"{poison}.onnx", TensorProto.FLOAT, ["b", "s"], ["b", 5],
                  poison=poison)  # fmt: skip
    sf.write(tmp_path / "yes.wav", tone_word("yes"), 16000)
    result = _cli("transcribe", "yes.wav", "-m", path, cwd=tmp_path)
    err = _err(result)
    assert result.returncode == 2 and says in err and str(path.name) in err, err
    assert result.stdout == b""


# -- 8. odd corners -------------------------------------------------------------
def test_deep_toml_and_other_sample_rates_are_refused_up_front(tmp_path):
    from speechlstm.config import RunConfig
    from speechlstm.config_text import apply_overrides, load_toml

    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match="deep.toml"):
        load_toml(deep)
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    with pytest.raises(ValueError, match="larger than"):
        load_toml(big)
    with pytest.raises(ValueError, match="16000 Hz"):
        apply_overrides(RunConfig(), {"features.sample_rate": "8000"})
    section = tmp_path / "section.toml"
    section.write_text("features = 3\n")
    with pytest.raises(ValueError, match="features"):
        load_toml(section)


def test_downloads_are_capped_and_need_a_scheme(tmp_path):
    from speechlstm.data.download import DownloadError, download

    sha = "0" * 64
    with pytest.raises(DownloadError, match="http://"):
        download("example.com/archive.tar.gz", tmp_path / "a.tgz", sha)
    with pytest.raises(DownloadError, match="more than the 3,000,000 bytes"):
        download("file:///dev/zero", tmp_path / "z.tgz", sha, max_bytes=3_000_000)
    assert (tmp_path / "z.tgz.part").stat().st_size <= 3_000_000


def test_a_file_cut_while_it_is_read_is_an_error_not_shorter_audio():
    from types import SimpleNamespace

    from speechlstm.audio import InvalidAudio, _check_complete

    with pytest.raises(InvalidAudio, match="truncated while being read: 50 of the 100"):
        _check_complete("x.wav", SimpleNamespace(format="WAV", frames=100), 50)
    _check_complete("x.wav", SimpleNamespace(format="WAV", frames=100), 100)
    _check_complete("x.mp3", SimpleNamespace(format="MP3", frames=100), 50)  # an estimate


def test_a_file_cut_between_open_and_read_is_refused(tmp_path, monkeypatch):
    import soundfile

    from speechlstm.audio import InvalidAudio, load_audio

    path = tmp_path / "cut.wav"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 32000), 16000, subtype="FLOAT")
    real_read = soundfile.SoundFile.read

    def read_then_cut(self, *args, **kwargs):
        with open(path, "r+b") as fh:  # another process truncates the file
            fh.truncate(20000)
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(soundfile.SoundFile, "read", read_then_cut)
    with pytest.raises(InvalidAudio, match="truncated while being read"):
        load_audio(path)


# -- 1 and 7 on the training side ------------------------------------------------
@pytest.mark.train
@pytest.mark.slow
def test_export_replaces_only_its_own_models(trained_run, tmp_path):
    from speechlstm.train.export import ExportError, export

    wav = tmp_path / "keep.wav"
    sf.write(wav, tone_word("yes"), 16000)
    before = wav.read_bytes()
    with pytest.raises(ExportError, match="not a file speechlstm wrote"):
        export(trained_run / "best.pt", wav)
    assert wav.read_bytes() == before
    with pytest.raises(ExportError, match="input checkpoint"):
        export(trained_run / "best.pt", trained_run / "best.pt", force=True)
    first = export(trained_run / "best.pt", tmp_path / "m.onnx")
    export(trained_run / "best.pt", first.path)  # ours: replaced
    export(trained_run / "best.pt", wav, force=True)
    assert wav.read_bytes() != before


@pytest.mark.train
def test_train_refuses_another_runs_files_and_a_second_run(tone_dataset, tmp_path, monkeypatch):
    from conftest import tiny_config

    from speechlstm.files import FileRefused, FolderLock
    from speechlstm.train.run import run_training

    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text('{"mine": true}')
    with pytest.raises(ValueError, match="metrics.json"):
        run_training(tone_dataset, out, tiny_config(1), cache_dir=None, show_progress=False)
    assert (out / "metrics.json").read_text() == '{"mine": true}'
    with FolderLock(tmp_path / "busy"), pytest.raises(FileRefused, match="another"):
        run_training(
            tone_dataset, tmp_path / "busy", tiny_config(1), cache_dir=None, show_progress=False
        )


@pytest.mark.train
def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(
    tone_dataset, tmp_path, monkeypatch
):
    import torch
    from conftest import tiny_config

    from speechlstm.train import checkpoint, trainer
    from speechlstm.train.run import run_training

    real_step = trainer.Trainer._step

    def step(self, idx, seed):
        loss, correct = real_step(self, idx, seed)
        if self.state.epoch >= 1:  # epoch 2 goes wrong
            loss = torch.tensor(float("nan"))
        return loss, correct

    monkeypatch.setattr(trainer.Trainer, "_step", step)
    out = tmp_path / "nan"
    with pytest.raises(trainer.TrainingDiverged, match="epoch 2, step 1"):
        run_training(tone_dataset, out, tiny_config(3), cache_dir=None, show_progress=False)
    last = checkpoint.load(out / "last.pt", resumable=True)
    assert last.train_state.epoch == 1
    assert all(torch.isfinite(v).all() for v in last.model.values() if v.is_floating_point())
    assert not (out / "metrics.json").exists()


def test_threads_do_not_leak_from_the_lock(tmp_path):
    # A lock is per open file description: a thread of the same process that
    # takes it again is refused too, so two runs in one process cannot share a folder.
    from speechlstm.files import FileRefused, FolderLock

    lock = FolderLock(tmp_path)
    errors = []

    def other():
        try:
            FolderLock(tmp_path)
        except FileRefused as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    lock.release()
    assert errors


def test_a_full_disk_mid_run_names_the_output_and_keeps_the_rows(tmp_path):
    import errno

    from speechlstm.outputs import OutputError
    from speechlstm.scoring import RowWriter, Scored

    out = tmp_path / "rows.csv"
    writer = RowWriter(out, "csv", append=False, labels=("yes", "no"), k=2)
    probs = np.array([0.7, 0.3], np.float32)
    writer.write(Scored("a.wav", probs, 1.0))
    real = writer.fh

    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    writer.fh = FullDisk()
    writer.csv = __import__("csv").writer(writer.fh)
    with pytest.raises(OutputError, match="rows.csv: cannot write \\(No space left on device\\)"):
        writer.write(Scored("b.wav", probs, 1.0))
    real.close()
    assert out.read_text().splitlines()[1].startswith("a.wav,yes,0.7")
