"""`speechlstm serve`: the Wyoming service (Home Assistant, wyoming-satellite)."""

from __future__ import annotations

import typer

from .common import MODELS_HELP, fail, finite, load_api_recognizer, sensitivity_option


def serve(
    uri: str = typer.Option(
        "tcp://127.0.0.1:10400",
        "--uri",
        help="Where to listen: tcp://HOST:PORT (tcp://0.0.0.0:10400 for the network) "
        "or unix:///path/to/socket.",
    ),
    model: list[str] | None = typer.Option(None, "--model", "-m", help=MODELS_HELP),
    language: str = typer.Option("en", "--language", help="The models' language, as announced."),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        callback=finite,
        min=0.0,
        max=1.0,
        help="Wake words: every label's threshold.",
    ),
    sensitivity: float | None = sensitivity_option(),
    threads: int = typer.Option(
        2, "--threads", min=1, max=64, help="Model calls at once, all connections together."
    ),
    zeroconf: bool = typer.Option(
        False, "--zeroconf", help="Announce the service on the local network (needs zeroconf)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Log every connection and detection."),
) -> None:
    """Serve wake words and command transcription over the Wyoming protocol.

    Each model's command labels are wake words (with its stored detector), and
    each model is a speech-to-text model whose transcript is the recognized
    command (empty for _unknown_ and _silence_). In Home Assistant: Settings >
    Devices & services > Add integration > Wyoming Protocol, then this host and
    port. SIGTERM or Ctrl-C stops it. Logs go to stderr.

    Examples:

      speechlstm serve --uri tcp://0.0.0.0:10400

      speechlstm serve --uri tcp://0.0.0.0:10400 -m sc12 -m mywords.onnx

      speechlstm serve --uri unix:///run/speechlstm.sock --debug
    """
    import asyncio
    import logging

    try:
        import wyoming  # noqa: F401
    except ImportError:
        fail("serve needs the wyoming package: pip install 'speechlstm[serve]'")
    from speechlstm.serve import ServiceConfig, check_uri
    from speechlstm.serve import serve as run_service

    try:
        check_uri(uri)
    except ValueError as exc:
        fail(f"--uri {exc}")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    models = tuple(load_api_recognizer(m, threads=1) for m in (model or [None]))
    overrides = {"threshold": threshold, "sensitivity": sensitivity}
    for m in models if sensitivity is not None else ():
        try:  # refused now, not at each client's first detect
            m.runtime.description.detector.at_sensitivity(sensitivity)
        except ValueError as exc:
            fail(f"--sensitivity: {m.name} {exc}")
    cfg = ServiceConfig(
        models,
        language=language,
        detector_overrides=tuple((k, v) for k, v in overrides.items() if v is not None),
        threads=threads,
    )
    try:
        asyncio.run(run_service(cfg, uri, zeroconf=zeroconf))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # the address in use, a folder that does not exist
        fail(f"cannot listen on {uri}: {exc.strerror or exc}")
    except (RuntimeError, ValueError) as exc:
        fail(str(exc))
    logging.getLogger("speechlstm.serve").info("stopped")
