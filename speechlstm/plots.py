"""Training curves and confusion matrices as PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


# Written into every PNG's tEXt chunk: how `is_our_png` knows a plot it may replace.
SOFTWARE = "speechlstm"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _save(fig, path: Path) -> None:
    """The figure as a PNG, written atomically (whole or absent, never through a
    link), tagged as ours."""
    import io

    from .files import write_atomic

    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png", metadata={"Software": SOFTWARE})
    write_atomic(path, buf.getvalue(), fsync=False)


def is_our_png(path: Path) -> bool:
    """A PNG this module wrote: its Software tEXt chunk says so (read from the
    first kilobytes only: matplotlib writes it before the image data)."""
    from .files import FileRefused, open_regular

    try:
        with open_regular(path, "plot") as fh:
            head = fh.read(4096)
    except (FileRefused, OSError):
        return False
    return head.startswith(PNG_MAGIC) and b"tEXtSoftware\x00" + SOFTWARE.encode() in head


def plot_curves(history: list[dict], path: Path) -> None:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], label="train")
    ax_acc.plot(epochs, [h["val_accuracy"] for h in history], label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


MAX_CONFUSION_INCHES = 22.0
MAX_CONFUSION_TICKS = 80


def plot_confusion(cm: np.ndarray, labels, path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix with the counts written in each cell."""
    plt = _pyplot()
    n = len(labels)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    # At most 22 inches (2,200 pixels): an encoder's ~500 words once asked for
    # 267 inches, a 27,000-pixel square that took 24 GB to draw.
    size = min(max(5.0, 0.5 * n + 2), MAX_CONFUSION_INCHES)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= MAX_CONFUSION_TICKS:
        ax.set_xticks(range(n), labels, rotation=60, ha="right")
        ax.set_yticks(range(n), labels)
    else:  # unreadable at this size: the order of metrics.json's labels instead
        title = f"{title} ({n} classes in label order)".strip()
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    color = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_reliability(bins: list[dict], path: Path, ece: float) -> None:
    """Accuracy against confidence per bin; the diagonal is perfect calibration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfectly calibrated")
    if bins:
        centers = [(b["low"] + b["high"]) / 2 for b in bins]
        ax.bar(
            centers,
            [b["accuracy"] for b in bins],
            width=1 / max(10, len(bins)) * 0.9,
            alpha=0.7,
            label="accuracy",
        )
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            "o-",
            color="C1",
            label="mean confidence",
        )
    ax.set(
        xlabel="confidence",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"reliability (ECE {ece:.3f})",
    )
    ax.legend(loc="upper left")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_det(trace: list[dict], chosen: dict, path: Path, title: str = "", points=()) -> None:
    """The tuner's DET curve: share of commands matched against false alarms an hour,
    one line per smoothing span (and verifier threshold; its global thresholds),
    the chosen setting and the stored operating points marked. The x axis is
    symmetric-log so 0 false alarms an hour has its place."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = sorted({(r["smoothing_ms"], r.get("verifier_threshold", 0.0)) for r in trace})
    for span, vthr in curves:
        rows = [
            r
            for r in trace
            if r["smoothing_ms"] == span
            and r.get("verifier_threshold", 0.0) == vthr
            and "per_label" not in r
        ]
        rows.sort(key=lambda r: r["threshold"])
        ax.plot(
            [r["false_per_hour"] for r in rows],
            [r["matched"] for r in rows],
            marker=".",
            lw=1,
            label=f"smoothing {span:.0f} ms" + (f", verifier {vthr}" if vthr else ""),
        )
    if points:
        ax.scatter(
            [p.false_per_hour for p in points],
            [p.matched for p in points],
            marker="D",
            color="black",
            zorder=6,
            label="stored points (--sensitivity)",
        )
    ax.scatter(
        [chosen["false_per_hour"]],
        [chosen["matched"]],
        s=120,
        facecolors="none",
        edgecolors="black",
        linewidths=2,
        zorder=5,
        label=f"chosen: {chosen['matched']:.3f} matched, {chosen['false_per_hour']} an hour",
    )
    ax.set_xscale("symlog", linthresh=1.0)
    worst = max([r["false_per_hour"] for r in trace] + [chosen["false_per_hour"], 10.0])
    ax.set_xlim(0, worst * 1.2)
    ax.set(xlabel="false alarms an hour", ylabel="share of commands matched", ylim=(0, 1.02))
    ax.set_title(title or "detector settings (tune-detector)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
