"""Round 3 of the hostile-input families (issue 46), each held in the shared
mechanism: file modes under the umask, CSV cells a spreadsheet would run,
options refused at parse time, output errors that name the output."""

from __future__ import annotations

import csv
import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlstm.testing.cli import run_cli
from speechlstm.testing.synth_audio import SR, tone_word

_cli = run_cli  # the command line as a user runs it


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_atomic_writes_keep_the_mode_an_ordinary_write_gets(tmp_path, mask):
    from speechlstm.files import temp_beside, write_atomic

    old = os.umask(mask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        atomic = write_atomic(tmp_path / "atomic.txt", "x")
        fd, tmp = temp_beside(tmp_path / "other.bin")
        os.close(fd)
    finally:
        os.umask(old)
    want = stat.S_IMODE(plain.stat().st_mode)
    assert want == 0o666 & ~mask
    assert stat.S_IMODE(atomic.stat().st_mode) == want
    assert stat.S_IMODE(Path(tmp).stat().st_mode) == want


def test_score_results_and_receipts_are_readable_by_others(onnx_model, tmp_path):
    clip = tmp_path / "yes.wav"
    sf.write(clip, tone_word("yes"), SR)
    out = tmp_path / "out.csv"
    result = _cli("score", clip, "-m", onnx_model, "-o", out, "--shard", "0/1", "--no-progress")
    assert result.returncode == 0, result.stderr
    for path in tmp_path.iterdir():
        if path.is_file() and path.suffix in (".csv", ".json"):
            assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, path


@pytest.mark.slow
def test_csv_cells_a_spreadsheet_would_run_are_escaped_and_read_back(onnx_model, tmp_path):
    names = ["=HYPERLINK(x).wav", "+1.wav", "-a.wav", "@SUM.wav", "'quoted.wav", "plain.wav"]
    for name in names:
        sf.write(tmp_path / name, tone_word("up"), SR)
    out = tmp_path / "res" / "out.csv"
    out.parent.mkdir()
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{tmp_path / n}\n" for n in names))
    first = _cli("score", listing, "-m", onnx_model, "-o", out, "--no-progress")
    assert first.returncode == 0, first.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    cells = {Path(r["path"].lstrip("'")).name: r["path"] for r in rows}
    for name in names:
        cell = cells[name]
        raw = str(tmp_path / name)
        # Absolute paths begin with "/": nothing to escape; check a relative run too.
        assert cell in (raw, "'" + raw)
    # Relative names: the first character is the name's own.
    rel = tmp_path / "rel.csv"
    second = _cli("score", "-m", onnx_model, "-o", rel, "--no-progress", "--", *names, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    rows = list(csv.DictReader(io.StringIO(rel.read_text())))
    got = [r["path"] for r in rows]
    assert got == [
        "'=HYPERLINK(x).wav",
        "'+1.wav",
        "'-a.wav",
        "'@SUM.wav",
        "''quoted.wav",
        "plain.wav",
    ]
    # --resume reads them back as the files they name: nothing is scored twice.
    again = _cli(
        "score",
        "-m",
        onnx_model,
        "-o",
        rel,
        "--resume",
        "--no-progress",
        "--",
        *names,
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert len(list(csv.DictReader(io.StringIO(rel.read_text())))) == len(names)
    # JSON lines stay verbatim.
    js = _cli(
        "score",
        "-m",
        onnx_model,
        "-f",
        "jsonl",
        "--no-progress",
        "--",
        "=HYPERLINK(x).wav",
        cwd=tmp_path,
    )
    assert b'"path": "=HYPERLINK(x).wav"' in js.stdout


def test_csv_cell_round_trip():
    from speechlstm.outputs import csv_cell, csv_value

    for text in ["", "a", "=1", "''", "'", "\t1", "\rx", "-", "@", "+", "a=b", "'=x"]:
        assert csv_value(csv_cell(text)) == text
        assert not csv_cell(text).startswith(("=", "+", "-", "@", "\t", "\r"))


@pytest.mark.parametrize(
    "args",
    [
        ["live", "--input", "x.wav", "--gate-dbfs", "5"],
        ["live", "--input", "x.wav", "--gate-dbfs", "nan"],
        ["live", "--input", "x.wav", "--threshold", "nan"],
        ["live", "--input", "x.wav", "--hop-ms", "nan"],
        ["live", "--input", "x.wav", "--verifier-threshold", "0.9"],
        ["transcribe", "x.wav", "--verifier-threshold", "0.9"],
    ],
)
def test_options_out_of_range_are_usage_errors(onnx_model, tmp_path, args):
    sf.write(tmp_path / "x.wav", np.zeros(SR, np.float32), SR)
    result = _cli(*args, "-m", onnx_model, cwd=tmp_path)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "Traceback" not in err and "unexpected" not in err


def test_writing_to_a_full_disk_names_standard_output(onnx_model, tmp_path):
    clip = tmp_path / "yes.wav"
    sf.write(clip, tone_word("yes"), SR)
    with open("/dev/full", "wb") as full:
        for args in (
            ["score", clip, "-m", onnx_model, "--no-progress"],
            ["transcribe", clip, "-m", onnx_model],
        ):
            result = _cli(*args, stdout=full)
            err = result.stderr.decode()
            assert result.returncode == 2, err
            assert "standard output" in err and "unexpected" not in err


def test_help_into_a_full_disk_fails_quietly():
    with open("/dev/full", "wb") as full:
        result = _cli("--help", stdout=full)
    assert result.returncode != 0
    assert b"Traceback" not in result.stderr and b"unexpected" not in result.stderr


def test_score_into_a_closed_pipe_exits_141(onnx_model, tmp_path):
    for i in range(40):
        sf.write(tmp_path / f"c{i:02d}.wav", tone_word("no"), SR)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "speechlstm",
            "score",
            str(tmp_path),
            "-m",
            str(onnx_model),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.readline()  # the header: then the reader goes away, as `| head -1`
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert b"Traceback" not in proc.stderr.read()


def test_score_never_scores_its_own_output(onnx_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "a.wav", tone_word("yes"), SR)
    out = folder / "results.wav"
    result = _cli("score", folder, "-m", onnx_model, "-o", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [Path(r["path"]).name for r in rows] == ["a.wav"]


def test_progress_bars_never_draw_into_a_log_file(tmp_path):
    """Bars are drawn on a terminal only, whoever draws them: a log file of a
    run (stderr redirected) holds no redrawn bar."""
    code = (
        "from speechlstm.progress import progress_bar\n"
        "with progress_bar('embedding training clips', 100, unit='clips') as advance:\n"
        "    for _ in range(100): advance()\n"
    )
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        subprocess.run([sys.executable, "-c", code], stderr=fh, check=True)
    assert log.read_bytes() == b""


@pytest.mark.parametrize(
    "words, why",
    [
        ("yes," + "x" * 65, "longer than 64 characters"),
        ("yes,no\x07", "control characters"),
        (",".join(f"w{i}" for i in range(1000)), "at most 1000"),
    ],
)
def test_labels_a_model_could_not_carry_are_refused_before_any_work(tmp_path, words, why):
    """data synth refuses them before synthesizing anything: the limits the
    runtime enforces on a model's labels are checked where labels are made."""
    out = tmp_path / "synth"
    result = _cli("data", "synth", "--words", words, "--clips", "1", "--out", out)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert why in err and "Traceback" not in err
    assert not out.exists() or not any(out.rglob("*.wav"))


def test_a_dataset_whose_folders_cannot_be_labels_is_refused_by_train(tmp_path):
    from speechlstm.labels import Task

    with pytest.raises(ValueError, match="cannot be a class name"):
        Task(("yes", "n\x1bo"))
    with pytest.raises(ValueError, match="at most 1000"):
        Task(tuple(f"w{i}" for i in range(1000)))


def test_one_file_under_two_spellings_is_scored_once(onnx_model, tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    sf.write(folder / "x.wav", tone_word("yes"), SR)
    out = tmp_path / "out.csv"
    result = _cli(
        "score",
        "./dir/x.wav",
        "dir/x.wav",
        "dir//x.wav",
        "-m",
        onnx_model,
        "-o",
        out,
        "--no-progress",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["path"] for r in rows] == ["./dir/x.wav"]
    # --resume knows it under any spelling; so does sharding (one shard owns it).
    again = _cli(
        "score", "dir/x.wav", "-m", onnx_model, "-o", out, "--resume", "--no-progress", cwd=tmp_path
    )
    assert again.returncode == 0 and len(list(csv.DictReader(io.StringIO(out.read_text())))) == 1
    from speechlstm.shards import shard_of

    assert len({shard_of(p, 7) for p in ("./dir/x.wav", "dir/x.wav", "dir//x.wav")}) == 1


def test_merge_refuses_shards_scored_by_different_models(onnx_model, tmp_path):
    for i in range(6):
        sf.write(tmp_path / f"c{i}.wav", tone_word("up"), SR)
    other = tmp_path / "other.onnx"
    other.write_bytes(onnx_model.read_bytes() + b"")  # the same bytes: one model
    changed = tmp_path / "changed.onnx"
    import onnx

    m = onnx.load(str(onnx_model))
    m.doc_string = "another model"
    onnx.save(m, str(changed))
    parts = []
    for k, model in enumerate((onnx_model, changed)):
        part = tmp_path / f"part{k}.csv"
        result = _cli(
            "score",
            *sorted(tmp_path.glob("c*.wav")),
            "-m",
            model,
            "-o",
            part,
            "--shard",
            f"{k}/2",
            "--no-progress",
        )
        assert result.returncode == 0, result.stderr
        parts.append(part)
    merged = _cli("score", "--merge", *parts, "-o", tmp_path / "all.csv")
    err = merged.stderr.decode()
    assert merged.returncode == 2, err
    assert "different models" in err and str(onnx_model) in err and str(changed) in err
    assert not (tmp_path / "all.csv").exists()


@pytest.mark.train  # train needs the training side before it reads its flags
@pytest.mark.parametrize(
    "flag", [["--cell", "gru"], ["--layers", "3"], ["--pooling", "mean"], ["--from-scratch"]]
)
def test_embedding_frontend_refuses_the_mfcc_models_flags(tmp_path, flag):
    data = tmp_path / "data"
    (data / "yes").mkdir(parents=True)
    result = _cli("train", data, "--frontend", "embedding", "--out", tmp_path / "run", *flag)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert f"no use for {flag[0]}" in err
    assert not (tmp_path / "run").exists()


def test_a_bank_of_clips_that_lists_a_fifo_or_a_device_never_hangs(tmp_path):
    """The cache key hashes every listed file: a FIFO or /dev/zero among them is
    refused by name (decoding says why), not read for ever."""
    import threading

    from speechlstm.data.bank import load_bank

    good = tmp_path / "yes.wav"
    sf.write(good, tone_word("yes"), SR)
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    paths = [good, fifo, Path("/dev/zero")]
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(bank=load_bank(paths, SR, SR, tmp_path / "cache")),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "load_bank hung on a FIFO or a device"
    bank = result["bank"]
    assert list(bank.ok) == [True, False, False]
    assert "FIFO" in bank.errors[str(fifo)] and "character device" in bank.errors["/dev/zero"]


@pytest.mark.slow
def test_a_detector_file_for_another_models_labels_is_refused_wherever_it_is_read(
    onnx_model, tmp_path
):
    """Per-label thresholds (or a point's) for labels the model lacks: one line
    naming the file's labels, exit 2, in transcribe, live, export into a model
    and the API; nothing written."""
    from typer.testing import CliRunner

    from speechlstm.api import Detector
    from speechlstm.cli.main import app
    from speechlstm.config import DetectorConfig, OperatingPoint
    from speechlstm.detect.tuning import detector_toml

    wave = tmp_path / "w.wav"
    sf.write(wave, np.zeros(32000, np.float32), 16000)
    for cfg in (
        DetectorConfig(thresholds=(("lights", 0.7),)),
        DetectorConfig(points=(OperatingPoint(1.0, 0.9, 300.0, (("licht", 0.8),)),)),
    ):
        path = tmp_path / "other.toml"
        path.write_text(detector_toml(cfg))
        for args in (
            ["transcribe", "-m", str(onnx_model), "--detector", str(path), str(wave)],
            ["live", "-m", str(onnx_model), "--detector", str(path), "--input", str(wave)],
            ["store-detector", str(onnx_model), str(path), "-o", str(tmp_path / "new.onnx")],
        ):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 2, (args[0], result.output)
            assert "does not have" in result.output and "Traceback" not in result.output
        assert not (tmp_path / "new.onnx").exists()
        with pytest.raises(ValueError, match="does not have"):
            Detector(onnx_model, detector_file=path)


def _limited(limit_bytes: int):
    import resource

    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


@pytest.mark.slow
@pytest.mark.train
def test_a_checkpoint_or_export_that_cannot_be_written_names_the_file(tmp_path):
    """Under a file-size limit (a full disk answers alike): `train` and `export`
    end with one line naming the file they could not write, exit 2; the
    checkpoint there before is kept and no partial model is left."""
    from speechlstm.testing.synth_audio import make_dataset

    data = make_dataset(tmp_path / "data", speakers=4, takes=2)
    run = tmp_path / "run"
    base = [sys.executable, "-m", "speechlstm"]
    train = [*base, "train", str(data), "--out", str(run), "--epochs", "1", "--hidden", "32",
             "--no-progress", "--device", "cpu"]  # fmt: skip
    limited = subprocess.run(train, capture_output=True, text=True, preexec_fn=_limited(40_000))
    assert limited.returncode == 2, limited.stderr
    last = limited.stderr.strip().splitlines()[-1]
    assert "best.pt: cannot write the checkpoint" in last and "error: unexpected" not in last
    assert not list(run.glob("*.pt")) and not list(run.glob(".*.tmp"))
    again = subprocess.run([*train, "--force"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr  # room again: it trains
    out = tmp_path / "m.onnx"
    export = [*base, "export", str(run / "best.pt"), "-o", str(out)]
    failed = subprocess.run(export, capture_output=True, text=True, preexec_fn=_limited(40_000))
    assert failed.returncode == 2 and f"{out}: cannot write" in failed.stderr, failed.stderr
    assert (
        not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith("tmp")] == []
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["score", "data mine", "live --save-detections"])
def test_an_output_name_too_long_for_the_file_system_is_one_line(command, tmp_path, onnx_model):
    """A name part over the file system's 255 bytes: one line saying so, exit 2,
    before any work (it used to end in the "unexpected" line)."""
    clip = tmp_path / "yes.wav"
    sf.write(clip, tone_word("yes"), SR)
    long = str(tmp_path / ("a" * 300))
    args = {
        "score": ["score", str(clip), "-m", str(onnx_model), "-o", long + ".csv"],
        "data mine": ["data", "mine", str(clip), "-m", str(onnx_model), "--out", long],
        "live --save-detections": ["live", "--input", str(clip), "-m", str(onnx_model),
                              "--save-detections", long],
    }[command]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "speechlstm", *args], capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    assert "too long" in result.stderr and "unexpected" not in result.stderr


@pytest.mark.slow
def test_no_output_is_written_through_or_in_place_of_a_symbolic_link(tmp_path, onnx_model):
    """score -o, tune-detector --write and export -o at a link (dangling or to a
    file of the user's): one line naming the link, exit 2; the link and its
    target as they were."""
    from typer.testing import CliRunner

    from speechlstm.cli.main import app

    clip = tmp_path / "yes.wav"
    sf.write(clip, tone_word("yes"), SR)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    truth = tmp_path / "truth.csv"
    truth.write_text("label,start_s,end_s\nyes,0.2,0.8\n")
    detector = tmp_path / "d.toml"
    detector.write_text("[detector]\nthreshold = 0.7\n")
    for target in (victim, tmp_path / "nowhere.csv"):
        link = tmp_path / "out.link"
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        for args in (
            ["score", str(clip), "-m", str(onnx_model), "-o", str(link)],
            ["tune-detector", "-m", str(onnx_model), "--commands", str(clip), "--truth",
             str(truth), "--negatives", str(clip), "--write", str(link)],
            ["store-detector", str(onnx_model), str(detector), "-o", str(link)],
        ):  # fmt: skip
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 2, (args[0], result.output)
            assert "symbolic link" in result.output, (args[0], result.output)
            assert link.is_symlink() and victim.read_text() == "precious"
            assert not (tmp_path / "nowhere.csv").exists()
