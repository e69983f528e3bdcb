"""The `speechlstm` command line: one module per command group, registered here.

Each command parses and validates, then calls the library. Inference commands
(transcribe, info, score, evaluate, live, data) never import torch; train and
export import it when they run. Command modules import only `common` and the
library, so importing this module imports each of them once, with no cycle.
"""

from __future__ import annotations

import typer

from . import data_cmd, live_cmd, score_cmd, train_cmd, transcribe_cmd

app = typer.Typer(
    name="speechlstm",
    help="Speech command recognition: MFCC features + a bidirectional LSTM.\n\n"
    "Train with PyTorch (GPU when present), export to ONNX, run on the CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command(name="transcribe")(transcribe_cmd.transcribe)
app.command(name="info")(transcribe_cmd.info)
app.command(name="live")(live_cmd.live)
app.command(name="score")(score_cmd.score)
app.command(name="evaluate")(score_cmd.evaluate)
app.command(name="train")(train_cmd.train)
app.command(name="export")(train_cmd.export)
app.add_typer(data_cmd.app, name="data")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
