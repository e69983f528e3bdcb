"""`speechlstm serve`: wake words and command transcription over the Wyoming protocol.

Home Assistant's voice pipeline and wyoming-satellite talk to wake-word and
speech-to-text services over Wyoming (rhasspy/wyoming): newline-framed JSON
events with binary payloads. This module builds on the `wyoming` package's own
server and event classes (the `serve` extra) and on the public API
(api.Recognizer, api.Detector), so the service, `live` and a Python program
give the same answers:

    describe                          -> info: a wake program (each model's command
                                         labels as wake words) and an asr program
                                         (each model), with attribution
    detect [names]  audio-start, audio-chunk..., audio-stop
                                      -> detection (name = label, timestamp = ms from
                                         the audio's start) as each is heard;
                                         not-detected at audio-stop when none was
    transcribe [name]  audio-start, audio-chunk..., audio-stop
                                      -> transcript: the recognized command, or ""
                                         for _unknown_ and _silence_

Every connection has its own state: a Detector per stream (the loaded models
are shared, read-only; onnxruntime sessions come from each model's pool) and
a StreamClassifier per transcription, both bounded (one window) however long
the connection streams. Audio in the rate, width and channel count that
`audio-start` announces is converted as files are. Model calls run on a small
thread pool, so a connection's inference never blocks the others' events.
A client that breaks the protocol (a chunk before audio-start, a chunk in
another format than announced or larger than MAX_CHUNK_S, an event larger
than MAX_EVENT_BYTES, bytes that are not an event) gets its connection closed
with one log line; the service goes on. numpy + onnxruntime + wyoming, no torch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from . import __version__
from .api import Detector, Recognizer
from .labels import BACKGROUND_LABELS

_LOGGER = logging.getLogger("speechlstm.serve")

MAX_CHUNK_S = 10.0  # one audio-chunk holds at most this much audio
MAX_EVENT_BYTES = 8 << 20  # header line, data and payload of one event
WIDTH_DTYPES = {1: "u1", 2: "<i2", 3: "<i4", 4: "<i4"}  # bytes a sample -> numpy dtype
ATTRIBUTION_URL = "https://github.com/speechlstm/speechlstm"
SPEECH_COMMANDS = "Speech Commands v0.02 (Warden 2018), CC-BY-4.0"


class ProtocolError(ValueError):
    """A client that broke the protocol; the message says how."""


@dataclass(frozen=True)
class ServiceConfig:
    """What `speechlstm serve` was asked to serve."""

    models: tuple[Recognizer, ...]
    language: str = "en"
    detector_overrides: tuple[tuple[str, object], ...] = ()  # Detector keywords
    threads: int = 2  # model calls at once, all connections together


def describe(cfg: ServiceConfig):
    """The `info` event's content: a wake program and an asr program."""
    from wyoming.info import AsrModel, AsrProgram, Attribution, Info, WakeModel, WakeProgram

    ours = Attribution(name="speechlstm", url=ATTRIBUTION_URL)
    wake_models, asr_models, seen = [], [], set()
    for rec in cfg.models:
        credit = _credit(rec)
        attribution = Attribution(name=credit, url=ATTRIBUTION_URL)
        commands = [lab for lab in rec.labels if lab not in BACKGROUND_LABELS]
        for label in commands:
            if label in seen:  # one wake word a name; every model that has it hears it
                continue
            seen.add(label)
            wake_models.append(
                WakeModel(
                    name=label,
                    description=f"{label} ({rec.name})",
                    phrase=label,
                    attribution=attribution,
                    installed=True,
                    languages=[cfg.language],
                    version=__version__,
                )
            )
        asr_models.append(
            AsrModel(
                name=rec.name,
                description=f"{rec.name}: {', '.join(commands)}",
                attribution=attribution,
                installed=True,
                languages=[cfg.language],
                version=__version__,
            )
        )
    return Info(
        wake=[
            WakeProgram(
                name="speechlstm",
                description="speechlstm wake words: each model's commands, with its tuned detector",
                attribution=ours,
                installed=True,
                version=__version__,
                models=wake_models,
            )
        ],
        asr=[
            AsrProgram(
                name="speechlstm",
                description="speechlstm command recognition: the command word, or empty text",
                attribution=ours,
                installed=True,
                version=__version__,
                models=asr_models,
            )
        ],
    )


def _credit(rec: Recognizer) -> str:
    """Who the model's knowledge comes from, for the info's attribution."""
    credit = rec.description.frontend_credit
    source = rec.description.training.source or ""
    if credit:
        return f"speechlstm model {rec.name}; {credit}"
    if "sc12" in source or rec.name.startswith("sc12"):
        return f"speechlstm model {rec.name}, trained on {SPEECH_COMMANDS}"
    return f"speechlstm model {rec.name}"


class BoundedReader:
    """The connection's StreamReader with a size cap on what one event may take:
    wyoming's reader trusts the lengths a client declares. Past the cap it
    raises ValueError, which wyoming's `async_read_event` turns into the end of
    the connection; `refused` keeps the reason for the log line."""

    def __init__(self, reader: asyncio.StreamReader):
        self.reader = reader
        self.refused: str | None = None
        self.read_line = False  # a line came since the last whole event

    async def readline(self) -> bytes:
        line = await self.reader.readline()
        self.read_line = bool(line)
        return line

    async def readexactly(self, n: int) -> bytes:
        if not isinstance(n, int) or n > MAX_EVENT_BYTES:
            self.refused = f"an event declared {n} bytes (at most {MAX_EVENT_BYTES})"
            raise ValueError(self.refused)
        return await self.reader.readexactly(n)

    def feed_eof(self) -> None:
        self.reader.feed_eof()


class Connection:
    """One connection: its own detector or classifier, its own audio format.

    `wyoming` (the `serve` extra) is imported only when a service starts, so
    this class holds the protocol and `_handler_class` joins it to wyoming's
    AsyncEventHandler (the reader, the writer, write_event); its methods import
    the event classes they use, as `describe` does."""

    def __init__(self, service: Service, reader, writer):
        super().__init__(reader, writer)
        self.service = service
        self.bounded = BoundedReader(reader)
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a client"
        self.mode: str | None = None  # "detect" or "transcribe", once asked
        self.names: set[str] | None = None
        self.asr_model: Recognizer | None = None
        self.fmt: tuple[int, int, int] | None = None  # rate, width, channels
        self.detector: Detector | None = None
        self.classifier = None
        self.detections = 0
        self.samples = 0

    async def run(self) -> None:
        """wyoming's loop, with the connection's failures logged and contained."""
        from wyoming.event import async_read_event

        self._is_running = True
        self.service.connections += 1
        try:
            while self._is_running:
                event = await async_read_event(self.bounded)
                if event is None:
                    if self.bounded.refused or self.bounded.read_line:
                        why = self.bounded.refused or "bytes that are not a Wyoming event"
                        _LOGGER.warning("%s: closed: %s", self.peer, why)
                    break
                self.bounded.read_line = False
                if not await self.handle_event(event):
                    break
        except ProtocolError as exc:
            _LOGGER.warning("%s: closed: %s", self.peer, exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            _LOGGER.debug("%s: disconnected mid-event", self.peer)
        except Exception as exc:  # one client's failure never stops the service
            _LOGGER.warning("%s: closed: %s: %s", self.peer, type(exc).__name__, exc)
        finally:
            self.service.connections -= 1
            self.detector = self.classifier = None
            self.writer.close()

    async def handle_event(self, event) -> bool:
        from wyoming.asr import Transcribe
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.info import Describe
        from wyoming.wake import Detect

        if Describe.is_type(event.type):
            await self.write_event(describe(self.service.cfg).event())
        elif Detect.is_type(event.type):
            # A satellite sends detect again after each pipeline, mid-stream:
            # the names (a filter on what is reported) change, the stream goes on.
            self.mode, self.names = "detect", set(Detect.from_event(event).names or []) or None
            self.detections = 0
        elif Transcribe.is_type(event.type):
            self.mode = "transcribe"
            self.asr_model = self.service.model_named(Transcribe.from_event(event).name)
        elif AudioStart.is_type(event.type):
            start = AudioStart.from_event(event)
            self._start(start.rate, start.width, start.channels)
        elif AudioChunk.is_type(event.type):
            await self._chunk(AudioChunk.from_event(event))
        elif AudioStop.is_type(event.type):
            await self._stop()
        return True

    def _start(self, rate: int, width: int, channels: int) -> None:
        from .audio import MAX_CHANNELS, MAX_RATE_HZ, MIN_RATE_HZ

        if not (
            MIN_RATE_HZ <= rate <= MAX_RATE_HZ
            and width in WIDTH_DTYPES
            and 1 <= channels <= MAX_CHANNELS
        ):
            raise ProtocolError(
                f"audio-start with rate {rate}, width {width}, {channels} channels "
                f"(accepted: {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz, width 1-4 bytes, "
                f"1-{MAX_CHANNELS} channels)"
            )
        self.fmt = (rate, width, channels)
        self.samples = self.detections = 0
        if self.mode == "transcribe":
            from .transcribe import StreamClassifier

            self.classifier = StreamClassifier(self.asr_model.runtime)
            self.resampler = _resampler(rate, self.asr_model.sample_rate)
        else:  # detect, or audio with no request: wake words, as satellites stream
            self.mode = self.mode or "detect"
            self.detector = self.service.detector(rate, self.names)

    async def _chunk(self, chunk) -> None:
        if self.fmt is None:
            if self.mode != "detect":
                raise ProtocolError("audio-chunk before audio-start")
            # wyoming-satellite sends `detect`, then the microphone's chunks
            # with no audio-start: the first chunk's format is the stream's.
            self._start(chunk.rate, chunk.width, chunk.channels)
        if (chunk.rate, chunk.width, chunk.channels) != self.fmt:
            raise ProtocolError(
                f"audio-chunk as {chunk.rate} Hz, width {chunk.width}, "
                f"{chunk.channels} channels after audio-start announced {self.fmt}"
            )
        rate, width, channels = self.fmt
        frame = width * channels
        if len(chunk.audio) % frame or len(chunk.audio) > MAX_CHUNK_S * rate * frame:
            raise ProtocolError(
                f"audio-chunk of {len(chunk.audio)} bytes: not whole frames of {frame} "
                f"bytes, or over {MAX_CHUNK_S:g} s"
            )
        samples = _samples(chunk.audio, width).reshape(-1, channels)
        self.samples += len(samples)
        if self.mode == "transcribe":
            await self.service.run(self._classify, samples, False)
            return
        found = await self.service.run(self.detector.push, samples)
        await self._report(found)

    def _classify(self, samples, last: bool) -> None:
        from .audio import _int_to_float

        wave = _int_to_float(samples).mean(axis=1, dtype=np.float32)
        if self.resampler is not None:
            wave = np.clip(self.resampler.resample_chunk(wave, last=last), -1.0, 1.0)
        if wave.size:
            self.classifier.push(wave)

    async def _report(self, found) -> None:
        from wyoming.wake import Detection

        for det in found:
            if self.names and det.label not in self.names and det.model not in self.names:
                continue
            self.detections += 1
            _LOGGER.debug(
                "%s: detected %s (%s) at %.2f s", self.peer, det.label, det.model, det.end_s
            )
            await self.write_event(
                Detection(name=det.label, timestamp=round(det.end_s * 1000)).event()
            )

    async def _stop(self) -> None:
        from wyoming.asr import Transcript
        from wyoming.wake import NotDetected

        if self.fmt is None:
            raise ProtocolError("audio-stop before audio-start")
        self.fmt = None
        if self.mode == "transcribe":
            empty = np.zeros((0, 1), np.int16)
            await self.service.run(self._classify, empty, True)
            probs = await self.service.run(self.classifier.result)
            labels = self.asr_model.labels
            label = labels[int(np.argmax(probs))]
            text = "" if label in BACKGROUND_LABELS else label
            self.classifier = None
            await self.write_event(Transcript(text=text).event())
            return
        await self._report(await self.service.run(self.detector.flush))
        if self.detections == 0:
            await self.write_event(NotDetected().event())
        self.detector = None


def _handler_class() -> type:
    """The handler class wyoming's server runs: a Connection that is an
    AsyncEventHandler, made once the `wyoming` package is imported."""
    from wyoming.server import AsyncEventHandler

    class Handler(Connection, AsyncEventHandler):
        """A Connection as wyoming's server runs it."""

    return Handler


def _samples(audio: bytes, width: int) -> np.ndarray:
    """Little-endian PCM of `width` bytes a sample as integers (24-bit widened to
    32, so it scales as 32-bit does)."""
    if width != 3:
        return np.frombuffer(audio, dtype=WIDTH_DTYPES[width])
    b = np.frombuffer(audio, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    return ((b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)).astype("<i4")


def _resampler(rate: int, target: int):
    if rate == target:
        return None
    import soxr

    return soxr.ResampleStream(rate, target, 1, dtype="float32", quality="HQ")


class Service:
    """The models, the model-call pool and the handler factory of one server."""

    def __init__(self, cfg: ServiceConfig):
        if not cfg.models:
            raise ValueError("serve needs at least one model")
        self.cfg = cfg
        self.pool = ThreadPoolExecutor(max_workers=max(1, cfg.threads), thread_name_prefix="model")
        self.handler = _handler_class()
        self.connections = 0
        # Checked once here, so a bad setting is a start-up error, not a dropped client.
        self.detector(16000, None)

    def detector(self, rate: int, names: set[str] | None) -> Detector:
        models = list(self.cfg.models)
        if names:
            models = [m for m in models if m.name in names or set(m.labels) & names] or models
        return Detector(models, sample_rate=rate, **dict(self.cfg.detector_overrides))

    def model_named(self, name: str | None) -> Recognizer:
        for rec in self.cfg.models:
            if rec.name == name:
                return rec
        return self.cfg.models[0]  # no name, or one we do not serve: the first

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def factory(self, reader, writer):
        return self.handler(self, reader, writer)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def check_uri(uri: str) -> str:
    """`uri` if the service can listen there: tcp://HOST:PORT or unix://PATH, and a
    unix path that is free or an old socket (never a file of someone's)."""
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme == "tcp":
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None:
            raise ValueError(f"{uri}: expected tcp://HOST:PORT, e.g. tcp://0.0.0.0:10400")
        return uri
    if parsed.scheme == "unix":
        if not parsed.path:
            raise ValueError(f"{uri}: expected unix:///path/to/socket")
        path = Path(parsed.path)
        if path.exists() or path.is_symlink():
            mode = os.lstat(path).st_mode
            if not stat.S_ISSOCK(mode):
                # wyoming unlinks the path before binding: never a file that is not a socket.
                raise ValueError(f"{path}: exists and is not a socket; refusing to replace it")
        return uri
    raise ValueError(f"{uri}: the service listens on tcp://HOST:PORT or unix://PATH")


async def serve(cfg: ServiceConfig, uri: str, zeroconf: bool = False, ready=None) -> None:
    """Listen on `uri` until SIGTERM, SIGINT or cancellation; `ready(server)` is
    called once it listens (tests use it to learn the port)."""
    from wyoming.server import AsyncServer

    service = Service(cfg)
    server = AsyncServer.from_uri(check_uri(uri))
    task = asyncio.create_task(server.run(partial(Service.factory, service)))
    try:
        for _ in range(200):  # the listening socket appears once run() has started
            if getattr(server, "_server", None) is not None:
                break
            await asyncio.sleep(0.01)
        if task.done():
            await task  # raises: the address was in use, the path not writable...
        _LOGGER.info("listening on %s: %s", uri, ", ".join(m.name for m in cfg.models))
        if zeroconf:
            await _register_zeroconf(server)
        if ready is not None:
            ready(server)
        await task
    finally:
        if not task.done():
            await server.stop()
            task.cancel()
        service.close()


async def _register_zeroconf(server) -> None:
    """Announce the service as `_wyoming._tcp` on the local network, as
    wyoming-openwakeword does (needs the `zeroconf` package)."""
    try:
        from wyoming.zeroconf import HomeAssistantZeroconf
    except ImportError as exc:
        raise RuntimeError(f"--zeroconf needs the zeroconf package ({exc})") from None
    if not hasattr(server, "port"):
        raise RuntimeError("--zeroconf needs a tcp:// URI")
    hass = HomeAssistantZeroconf(name="speechlstm", port=server.port)
    await hass.register_server()
    _LOGGER.info("announced over zeroconf as speechlstm on port %s", server.port)
