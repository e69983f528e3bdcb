"""The settings reference in docs/training.md, generated from speechlstm/config.py.

    python scripts/settings_reference.py           # rewrite the table (make docs)
    python scripts/settings_reference.py --check   # exit 1 when it is out of date
    python scripts/settings_reference.py --undocumented   # the fields with no comment

One row per field of the config dataclasses a run reads (`RunConfig`'s
sections, and the operating points a detector stores): section, key, default
(as a run's config.toml writes it) and what the field's comment in config.py
says, the comment on its line or the comment lines just above it. A field
without a comment gets an empty cell: write the comment in config.py, never
here. The table sits between the two marker comments in docs/training.md;
tests/test_references.py fails when it differs from a fresh render.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import sys
import textwrap
import tokenize
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's speechlstm, installed or not

from speechlstm import config  # noqa: E402

PAGE = ROOT / "docs" / "training.md"
BEGIN = "<!-- settings:begin: generated from speechlstm/config.py by `make docs` -->"
END = "<!-- settings:end -->"


def field_comments(cls: type) -> dict[str, str]:
    """Each field's comment in `cls`'s source: the one on its line, else the
    block of comment lines right above it (no blank line between)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    trailing: dict[int, str] = {}  # line number (1-based) -> the comment after code on it
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.line[: tok.start[1]].strip():
            trailing[tok.start[0]] = tok.string
    out = {}
    (node,) = ast.parse(source).body
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        own = [trailing[n] for n in range(stmt.lineno, stmt.end_lineno + 1) if n in trailing]
        if not own:
            n = stmt.lineno - 1
            while n >= 1 and lines[n - 1].strip().startswith("#"):
                own.insert(0, lines[n - 1].strip())
                n -= 1
        text = " ".join(c.lstrip("#").strip() for c in own)
        out[stmt.target.id] = text
    return out


def toml_value(value: object) -> str:
    """A default as config.toml writes it (tables of pairs as inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value) + "}"
        if any(dataclasses.is_dataclass(v) for v in value):
            raise ValueError("a default holding dataclasses: render it by hand")
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def sections() -> list[tuple[str, type]]:
    """(section name, dataclass) in RunConfig's order, each followed by the
    dataclasses its tuple fields hold (the detector's operating points)."""
    out = []
    for f in dataclasses.fields(config.RunConfig):
        cls = f.default_factory
        out.append((f.name, cls))
        hints = typing.get_type_hints(cls)
        for sub in dataclasses.fields(cls):
            args = typing.get_args(hints[sub.name])
            if args and dataclasses.is_dataclass(args[0]):  # an array of tables
                out.append((f"[{f.name}.{sub.name}]", args[0]))
    return out


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    rows = [
        "| section | key | default | what it does |",
        "|---|---|---|---|",
    ]
    for name, cls in sections():
        comments = field_comments(cls)
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = f"`{toml_value(f.default)}`"
            elif f.default_factory is not dataclasses.MISSING:
                default = f"`{toml_value(f.default_factory())}`"
            else:
                default = "(required)"
            rows.append(f"| `[{name}]` | `{f.name}` | {default} | {cell(comments[f.name])} |")
    return "\n".join(rows) + "\n"


def undocumented() -> list[str]:
    """section.key of every field that has no comment in config.py."""
    return [
        f"{name.strip('[]')}.{key}"
        for name, cls in sections()
        for key, text in field_comments(cls).items()
        if not text
    ]


def spliced(page: str, table: str) -> str:
    """`page` with the text between the markers replaced by `table`."""
    head, begin, rest = page.partition(BEGIN)
    old, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{PAGE}: the markers {BEGIN!r} and {END!r} are missing")
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def main(argv: list[str]) -> int:
    if "--undocumented" in argv:
        print("\n".join(undocumented()))
        return 0
    page = PAGE.read_text(encoding="utf-8")
    new = spliced(page, render())
    if "--check" in argv:
        if new != page:
            print(
                f"{PAGE.relative_to(ROOT)}: the settings table differs from speechlstm/config.py; "
                "run `make docs`"
            )
            return 1
        return 0
    if new != page:
        PAGE.write_text(new, encoding="utf-8")
        print(f"wrote the settings table of {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
