"""Audio decoding: formats, bit depths, rates, channels, and every way a file can be bad."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechlstm.audio import SAMPLE_RATE, InvalidAudio, fix_length, load_audio


def sine(freq_hz=440.0, seconds=0.5, sr=SAMPLE_RATE, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


@pytest.mark.parametrize(
    "subtype,tol",
    [("PCM_U8", 1e-2), ("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-6), ("FLOAT", 1e-7)],
)
def test_wav_bit_depths_decode_to_the_same_float_signal(tmp_path, subtype, tol):
    ref = sine()
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, ref, SAMPLE_RATE, subtype=subtype)
    got = load_audio(path)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).max() < tol


@pytest.mark.parametrize("fmt", ["flac", "ogg"])
def test_flac_and_ogg(tmp_path, fmt):
    ref = sine(seconds=1.0)
    path = tmp_path / f"x.{fmt}"
    sf.write(path, ref, SAMPLE_RATE)
    got = load_audio(path)
    assert abs(len(got) - len(ref)) < 400  # ogg may pad a little
    n = min(len(got), len(ref))
    corr = np.corrcoef(got[:n], ref[:n])[0, 1]
    assert corr > 0.98


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_rates_are_resampled_keeping_pitch(tmp_path, rate):
    path = tmp_path / f"r{rate}.wav"
    sf.write(path, sine(1000.0, 1.0, sr=rate), rate)
    got = load_audio(path)
    assert abs(len(got) - SAMPLE_RATE) <= 1
    spectrum = np.abs(np.fft.rfft(got))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(got)
    assert abs(peak_hz - 1000.0) < 3


def test_stereo_is_averaged(tmp_path):
    left, right = sine(440.0), np.zeros(8000, dtype=np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), left / 2, atol=1e-7)


@pytest.mark.parametrize("channels,rate", [(1, 16000), (2, 16000), (1, 8000), (3, 44100)])
def test_pcm16_wav_fast_path_equals_libsndfile(tmp_path, channels, rate):
    """Plain 16-bit WAV skips libsndfile; the result must be the same bits."""
    rng = np.random.default_rng(channels)
    data = (rng.standard_normal((rate // 2, channels)) * 0.3).clip(-1, 1).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, data, rate, subtype="PCM_16")
    fast = load_audio(path)
    ref = sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float32)
    if rate == SAMPLE_RATE:
        np.testing.assert_array_equal(fast, ref)
    else:
        assert abs(len(fast) - len(ref) * SAMPLE_RATE / rate) <= 1


def test_pcm16_wav_with_a_chunk_before_the_data(tmp_path):
    """A LIST chunk between fmt and data (as many recorders write) is skipped."""
    ref = sine()
    plain = tmp_path / "plain.wav"
    sf.write(plain, ref, SAMPLE_RATE, subtype="PCM_16")
    raw = plain.read_bytes()
    data_at = raw.index(b"data")
    info = b"LIST" + (12).to_bytes(4, "little") + b"INFOISFT" + (0).to_bytes(4, "little")
    body = raw[12:data_at] + info + raw[data_at:]
    tagged = tmp_path / "tagged.wav"
    tagged.write_bytes(b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WAVE" + body)
    np.testing.assert_array_equal(load_audio(tagged), load_audio(plain))


def test_fix_length_pads_short_and_crops_long():
    assert fix_length(np.ones(10, np.float32), 16).tolist() == [1.0] * 10 + [0.0] * 6
    assert fix_length(np.arange(20.0), 16).tolist() == list(range(16))


def _expect_invalid(path, fragment):
    with pytest.raises(InvalidAudio) as info:
        load_audio(path)
    assert str(path) in str(info.value)
    assert fragment in info.value.reason
    return info.value


def test_directory_is_refused(tmp_path):
    _expect_invalid(tmp_path, "directory")


def test_missing_file(tmp_path):
    _expect_invalid(tmp_path / "nope.wav", "no such file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    _expect_invalid(path, "empty")


def test_non_audio_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples\n" * 20)
    _expect_invalid(path, "cannot decode")


def test_corrupt_header(tmp_path):
    path = tmp_path / "corrupt.wav"
    sf.write(path, sine(), SAMPLE_RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[8:12] = b"XXXX"  # "WAVE" magic destroyed
    path.write_bytes(bytes(data))
    _expect_invalid(path, "cannot decode")


def test_truncated_file(tmp_path):
    path = tmp_path / "truncated.wav"
    sf.write(path, sine(seconds=1.0), SAMPLE_RATE, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _expect_invalid(path, "truncated")


def test_header_only_file_has_no_frames(tmp_path):
    path = tmp_path / "header.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE, subtype="PCM_16")
    _expect_invalid(path, "no audio frames")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_content(tmp_path, bad):
    wave = sine()
    wave[100:110] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, wave, SAMPLE_RATE, subtype="FLOAT")
    _expect_invalid(path, "NaN or Inf")
