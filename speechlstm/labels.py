"""Label vocabularies and the mapping from dataset words to model classes.

A task is the list of classes a model predicts. `sc12` is the standard Speech
Commands benchmark: ten command words plus `_unknown_` (any other word) and
`_silence_` (no speech). Background classes are never reported as detections.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

UNKNOWN = "_unknown_"
SILENCE = "_silence_"
BACKGROUND_NOISE_DIR = "_background_noise_"
BACKGROUND_LABELS = frozenset({UNKNOWN, SILENCE})

SC12_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SC35_WORDS = (
    "backward",
    "bed",
    "bird",
    "cat",
    "dog",
    "down",
    "eight",
    "five",
    "follow",
    "forward",
    "four",
    "go",
    "happy",
    "house",
    "learn",
    "left",
    "marvin",
    "nine",
    "no",
    "off",
    "on",
    "one",
    "right",
    "seven",
    "sheila",
    "six",
    "stop",
    "three",
    "tree",
    "two",
    "up",
    "visual",
    "wow",
    "yes",
    "zero",
)


# What a model's labels may be: the runtime refuses a model outside these
# (modelmeta.py), so every place that makes labels checks them first
# (Task, parse_words): no run trains or exports a model nothing can load.
MAX_LABELS = 1000
MAX_LABEL_CHARS = 64


def label_problem(label) -> str | None:
    """Why `label` cannot be a class name, or None."""
    if not isinstance(label, str) or not label.strip():
        return "expected a non-empty string"
    if len(label) > MAX_LABEL_CHARS:
        return f"longer than {MAX_LABEL_CHARS} characters"
    if any(unicodedata.category(ch).startswith("C") for ch in label):
        return "holds control characters"
    return None


def check_labels(labels, what: str = "labels") -> None:
    """ValueError naming the first label a model could not carry, or the count."""
    labels = list(labels)
    if len(labels) > MAX_LABELS:
        raise ValueError(f"{what}: {len(labels)} classes (a model carries at most {MAX_LABELS})")
    for label in labels:
        problem = label_problem(label)
        if problem:
            raise ValueError(f"{what}: {label!r} cannot be a class name ({problem})")


@dataclass(frozen=True)
class Task:
    """Which classes a model predicts and how dataset words map onto them.

    `words` are the target classes in output order, then `_unknown_` (when
    `unknown`: every other word maps to it) and `_silence_` (when `silence`:
    made from background noise). Words with no class are dropped.
    """

    words: tuple[str, ...]
    unknown: bool = True
    silence: bool = True

    def __post_init__(self) -> None:
        # Made from folder names or --words: checked here, before any work.
        check_labels(self.labels, "the task's classes")

    @property
    def labels(self) -> tuple[str, ...]:
        return (
            self.words + ((UNKNOWN,) if self.unknown else ()) + ((SILENCE,) if self.silence else ())
        )

    @classmethod
    def from_labels(cls, labels: tuple[str, ...]) -> Task:
        """The task a model's labels describe (how evaluation maps dataset words)."""
        words = tuple(lab for lab in labels if lab not in BACKGROUND_LABELS)
        return cls(words, unknown=UNKNOWN in labels, silence=SILENCE in labels)

    def class_of(self, word: str) -> str | None:
        """The class a dataset word belongs to, or None if it is not used."""
        if word in self.words:
            return word
        if word == SILENCE:
            return SILENCE if self.silence else None
        return UNKNOWN if self.unknown else None


def make_task(task: str | None, words: str | list[str] | None, available: list[str]) -> Task:
    """Resolve the CLI's `--task` / `--words` into a Task.

    `available` lists the words the dataset has. `auto` is `sc12` when all ten
    Speech Commands words are present, else `all` (every word a class, plus
    `_silence_`, and `_unknown_` when the dataset has an `_unknown_/` folder).
    """
    if words:
        chosen = parse_words(words)
        missing = [w for w in chosen if w not in available]
        if missing:
            raise ValueError(
                f"--words: {', '.join(missing)} not in the dataset "
                f"(it has: {', '.join(sorted(available)) or 'no word folders'})"
            )
        return Task(tuple(chosen))
    task = (task or "auto").lower()
    if task == "auto":
        task = "sc12" if all(w in available for w in SC12_WORDS) else "all"
    if task == "sc12":
        missing = [w for w in SC12_WORDS if w not in available]
        if len(missing) == len(SC12_WORDS):
            raise ValueError(
                "--task sc12 needs the Speech Commands words (yes, no, up, ...); "
                f"this dataset has {', '.join(sorted(available)[:12]) or 'none'}. "
                "Use --task all or --words."
            )
        return Task(SC12_WORDS)
    if task == "all":
        words_all = tuple(sorted(w for w in available if w not in BACKGROUND_LABELS))
        if len(words_all) < 2:
            raise ValueError(f"--task all needs at least two word folders, found {len(words_all)}")
        # A `_unknown_/` folder (synthetic datasets write one) feeds the unknown class.
        return Task(words_all, unknown=UNKNOWN in available, silence=True)
    raise ValueError(f"unknown task {task!r}: use auto, sc12, all, or --words a,b,c")


def parse_words(words: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated words or short phrases (or a list) -> class names;
    ValueError naming the bad one. Each becomes a dataset folder, so path
    separators and leading dots or underscores (reserved) are refused."""
    items = words.split(",") if isinstance(words, str) else list(words)
    out = tuple(w.strip() for w in items if w.strip())
    if not out:
        raise ValueError("--words: no words given")
    bad = [w for w in out if "/" in w or "\\" in w or w.startswith((".", "_"))]
    if bad:
        raise ValueError(f"--words: {bad[0]!r} cannot be a folder name")
    dupes = sorted({w for w in out if out.count(w) > 1})
    if dupes:
        raise ValueError(f"--words: repeated {', '.join(dupes)}")
    check_labels((*out, UNKNOWN, SILENCE), "--words")
    return out
