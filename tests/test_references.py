"""What the docs, notes, recipes, scripts and code point at exists, every module
is in its package's map, and the generated references are current.

A pointer that names a file, a command or a flag that has gone misleads the
next reader more than no pointer at all: each failure below names the file and
line that points, and what is missing there.
"""

from __future__ import annotations

import ast
import glob
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What is read for pointers: the docs and notes, the build inputs and scripts,
# and the code (comments, docstrings, help texts).
SCANNED = (
    "*.md",
    "docs/**/*.md",
    "bench/README.md",
    "recipes/*",
    "scripts/*",
    "Makefile",
    "pyproject.toml",
    "speechlstm/**/*.py",
    "speechlstm/**/*.toml",
    "cli/*.py",
    "bench/*.py",
    "bench/*.toml",
    "tests/*.py",
)
NOT_SCANNED = {"tests/test_references.py"}  # its own patterns and examples
# The dated log records commands, scripts and flags as they were run, gone
# since or not; only its links must lead somewhere.
RECORDS = {"docs/log.md"}

# Repository paths are named from the top: a folder of the repository, then
# a path. Folders of data a user makes (data/, runs/, models/) and of
# measurement output (bench/out/) are not in the repository.
TOP = r"(?:speechlstm|cli|bench|docs|recipes|scripts|tests)"
REPO_PATH = re.compile(rf"(?<![\w./~$-])(?:\.\./)?({TOP}/[\w.*{{}},/-]*[\w*}}])")
ROOT_FILE = re.compile(r"(?<![\w./-])([A-Z][A-Z_]+\.md|Makefile|pyproject\.toml)\b")
MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
NOT_OURS = ("bench/out/",)
# Named on purpose though absent from a checkout: the link a source tree makes
# for `python -m speechlstm` (DEVELOPERS.md); below it, cli/'s files.
ABSENT_BY_DESIGN = {"speechlstm/cli"}


def scanned_files() -> list[Path]:
    files = set()
    for pattern in SCANNED:
        for name in glob.glob(str(ROOT / pattern), recursive=True):
            path = Path(name)
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and rel not in NOT_SCANNED and "__pycache__" not in rel:
                files.add(path)
    return sorted(files)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:  # a binary file a glob caught
        return []


def _expand(path: str) -> list[str]:
    """`a.{json,md}` -> a.json, a.md; a format field (`{name}`) is no path."""
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    if "," not in m.group(1):
        return []
    return [
        out
        for alt in m.group(1).split(",")
        for out in _expand(path[: m.start()] + alt + path[m.end() :])
    ]


def _exists(rel: str) -> bool:
    rel = rel.rstrip("/.")
    if rel.startswith("speechlstm/cli/"):  # cli/ as the installed package maps it
        rel = rel.removeprefix("speechlstm/")
    if any(c in rel for c in "*?["):
        return bool(glob.glob(str(ROOT / rel)))
    if (ROOT / rel).exists():
        return True
    # `bench/synthetic_to_real.real_accuracy`: a module's attribute
    head, _, last = rel.rpartition("/")
    module = last.split(".", 1)[0]
    return "." in last and (ROOT / head / f"{module}.py").is_file()


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def dangling_paths(files: list[Path] | None = None) -> list[str]:
    out = []
    for path in scanned_files() if files is None else files:
        rel_file = _rel(path)
        for n, line in enumerate(_lines(path), 1):
            named = []
            if rel_file not in RECORDS:
                named += [m.group(1) for m in REPO_PATH.finditer(line)]
                named += [m.group(1) for m in ROOT_FILE.finditer(line)]
            if path.suffix == ".md":
                for m in MD_LINK.finditer(line):
                    target = m.group(1)
                    if re.match(r"[a-z]+:", target):  # http:, mailto:, ...
                        continue
                    resolved = (path.parent / target).resolve()
                    try:
                        named.append(resolved.relative_to(ROOT).as_posix())
                    except ValueError:
                        out.append(f"{rel_file}:{n}: {target} (outside the repository)")
            for name in named:
                if name.startswith(NOT_OURS) or name.rstrip("/") in ABSENT_BY_DESIGN:
                    continue
                for one in _expand(name):
                    if not _exists(one):
                        out.append(f"{rel_file}:{n}: {one}")
    return out


def test_every_repository_path_named_exists():
    missing = dangling_paths()
    assert not missing, (
        "these lines name repository paths that do not exist (moved, renamed or "
        "deleted: point at what replaced them, or drop the pointer):\n  " + "\n  ".join(missing)
    )


# -- commands and flags ------------------------------------------------------

# `speechlstm CMD ...` and `python bench/X.py ...` as written to be run. In a
# strong context (markdown code, a script's command lines) every command word
# is checked; elsewhere (comments, docstrings, help texts, where "speechlstm"
# is also a word of prose) only the options of the commands that exist.
SPEECHLSTM = re.compile(
    r"(?<![\w.\[-])(?<!from )(?<!import )(?:speechlstm|\$SL)(?=\s)\s+([a-z][a-z-]*)(.*)"
)
BENCH = re.compile(r"(?<![\w/])(bench/\w+\.py)(.*)")
COMMAND_END = re.compile(r"[`;|()]|&&|\s#\s|\s{3,}")
PYTHON_FENCE = re.compile(r"```\s*(python|py|pycon)\b")


def _code_lines(path: Path) -> list[tuple[int, str, bool]]:
    """(line number, text, strong) of the text that may hold a command,
    continuation lines (ending in a backslash) joined. In markdown: backticked
    spans (also across a line break), fenced blocks but python ones, and
    indented blocks; all strong. A script's command lines are strong too."""
    lines = _lines(path)
    if path.suffix == ".md":
        return _markdown_code(lines)
    out: list[tuple[int, str, bool]] = []
    pending: tuple[int, str] | None = None
    shell = path.suffix == ".sh" or path.name == "Makefile"
    for n, line in enumerate(lines, 1):
        text = line.rstrip()
        if pending:
            n, text = pending[0], pending[1] + " " + text.strip()
        if text.endswith("\\"):
            pending = (n, text[:-1])
            continue
        pending = None
        out.append((n, text, shell and not text.lstrip().startswith("#")))
    return out


def _markdown_code(lines: list[str]) -> list[tuple[int, str, bool]]:
    out: list[tuple[int, str, bool]] = []
    fence: str | None = None
    block: list[tuple[int, str]] = []  # a code block's lines, joined at the end
    paragraph: list[tuple[int, str]] = []

    def flush_paragraph() -> None:
        text = "\n".join(t for _, t in paragraph)
        for m in re.finditer(r"`([^`]+)`", text):
            n = paragraph[0][0] + text.count("\n", 0, m.start())
            out.append((n, m.group(1).replace("\n", " "), True))
        paragraph.clear()

    def flush_block() -> None:
        pending: tuple[int, str] | None = None
        for n, text in block:
            if pending:
                n, text = pending[0], pending[1] + " " + text.strip()
            if text.rstrip().endswith("\\"):
                pending = (n, text.rstrip()[:-1])
                continue
            pending = None
            out.append((n, text, True))
        block.clear()

    previous_blank = True
    for n, line in enumerate(lines, 1):
        stripped = line.lstrip()
        if stripped.startswith("```"):
            if fence:
                flush_block()
                fence = None
            else:
                flush_paragraph()
                fence = "python" if PYTHON_FENCE.match(stripped) else "code"
            continue
        if fence:
            if fence == "code":
                block.append((n, line))
            continue
        indented = line.startswith("    ") and (previous_blank or bool(block))
        if indented and not paragraph:
            block.append((n, line))
        else:
            flush_block()
            if line.strip():
                paragraph.append((n, line))
            else:
                flush_paragraph()
        previous_blank = not line.strip()
    flush_paragraph()
    flush_block()
    return out


# A command at the start of a script's command line, or after a separator.
SHELL_START = re.compile(r"(?:^|[|;]|&&|\$\(|\bthen|\bdo)\s*$")


def _cli_commands() -> dict[str, set[str]]:
    """'train', 'data streams', ... -> the options it takes."""
    import typer.main

    from speechlstm.cli.main import app

    out: dict[str, set[str]] = {}

    def walk(prefix: str, cmd) -> None:
        opts = {"-h", "--help"}
        for p in cmd.params:
            opts.update(o for o in (*p.opts, *p.secondary_opts) if o.startswith("-"))
        if prefix:
            out[prefix] = opts
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(f"{prefix} {name}".strip(), sub)

    walk("", typer.main.get_command(app))
    return out


def _flags(rest: str, quote: str) -> list[str]:
    """The options of a command whose text follows; it ends at the quote that
    opened before it, if any, or at a shell separator."""
    if quote:
        rest = rest.split(quote, 1)[0]
    rest = COMMAND_END.split(rest, maxsplit=1)[0]
    try:
        words = shlex.split(rest, comments=False)
    except ValueError:  # an unbalanced quote in prose
        words = rest.split()
    return [w.split("=")[0] for w in words if re.fullmatch(r"--?[a-zA-Z][\w-]*(=.*)?", w)]


def _quote_before(text: str, start: int) -> str:
    before = text[:start].rstrip()
    return before[-1] if before and before[-1] in "'\"" else ""


def wrong_commands(files: list[Path] | None = None) -> list[str]:
    commands = _cli_commands()
    groups = {name.split()[0] for name in commands if " " in name}
    out = []
    for path in scanned_files() if files is None else files:
        rel_file = _rel(path)
        if rel_file in RECORDS:
            continue
        shell = path.suffix == ".sh" or path.name == "Makefile"
        for n, text, strong in _code_lines(path):
            for m in SPEECHLSTM.finditer(text):
                name, rest = m.group(1), m.group(2)
                if name in groups:
                    sub = re.match(r"\s+([a-z][a-z-]*)(.*)", rest)
                    if not sub or f"{name} {sub.group(1)}" not in commands:
                        continue  # `speechlstm data ...` with no subcommand named
                    name, rest = f"{name} {sub.group(1)}", sub.group(2)
                elif name not in commands:
                    # in a script, a command word only where a command starts
                    if strong and (not shell or SHELL_START.search(text[: m.start()])):
                        out.append(f"{rel_file}:{n}: speechlstm {name}: no such command")
                    continue
                for flag in _flags(rest, _quote_before(text, m.start())):
                    if flag not in commands[name]:
                        out.append(f"{rel_file}:{n}: speechlstm {name} {flag}: no such option")
            for m in BENCH.finditer(text):
                script = ROOT / m.group(1)
                if not script.is_file():
                    continue  # the path test reports it
                source = script.read_text(encoding="utf-8")
                for flag in _flags(m.group(2), _quote_before(text, m.start())):
                    if flag.startswith("--") and f'"{flag}"' not in source:
                        out.append(f"{rel_file}:{n}: {m.group(1)} {flag}: no such option")
    return out


def test_every_command_and_option_named_exists():
    wrong = wrong_commands()
    assert not wrong, (
        "these lines name a `speechlstm` command or option, or a bench/ script's "
        "option, that does not exist:\n  " + "\n  ".join(wrong)
    )


def test_the_checks_catch_stale_pointers(tmp_path):
    # The checks above pass only if they can fail: a page with the kinds of
    # pointer issue 45 found.
    page = tmp_path / "page.md"
    page.write_text(
        "See `bench/ablation.py`, ENVIRONMENT.md and recipes/*.toml.\n"
        "`python bench/streaming.py --write-streams data/streams`, then\n"
        "`speechlstm data streams SC\n--bogus`.\n\n"
        "    speechlstm frobnicate\n"
        "    speechlstm train data --epochs 3 \\\n"
        "        --nope 1\n\n"
        "```python\nfrom speechlstm import Detector\n```\n",
        encoding="utf-8",
    )
    assert dangling_paths([page]) == ["page.md:1: bench/ablation.py", "page.md:1: ENVIRONMENT.md"]
    assert wrong_commands([page]) == [
        "page.md:2: bench/streaming.py --write-streams: no such option",
        "page.md:3: speechlstm data streams --bogus: no such option",
        "page.md:6: speechlstm frobnicate: no such command",
        "page.md:7: speechlstm train --nope: no such option",
    ]


# -- package maps ------------------------------------------------------------


def _map_names(text: str) -> set[str]:
    """The names a map lists: the first word of each of its lines."""
    return set(re.findall(r"(?m)^\s*(?:-\s+)?([A-Za-z_]\w*)(?=/|:|\s|$)", text))


def _developers_map() -> str:
    """The module map of `speechlstm/` in DEVELOPERS.md ("The layout")."""
    notes = (ROOT / "DEVELOPERS.md").read_text(encoding="utf-8")
    layout = notes.split("## The layout", 1)[1].split("```")[1]
    block = layout.split("speechlstm/", 1)[1]
    return "\n".join(
        line for line in block.splitlines()[1:] if line.startswith("  ") or not line.strip()
    ).split("\n\n")[0]


def missing_from_maps() -> list[str]:
    out = []
    for init in sorted((ROOT / "speechlstm").rglob("__init__.py")):
        package = init.parent
        modules = {
            p.stem if p.is_file() else p.name
            for p in package.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__")
            or (p.is_dir() and (p / "__init__.py").is_file())
        }
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        listed = _map_names(doc)
        where = init.relative_to(ROOT).as_posix()
        if package == ROOT / "speechlstm" and not listed & modules:
            # The package root keeps no map (it stays import-light and says
            # what the two sides are); the layout in DEVELOPERS.md is its map.
            listed, where = _map_names(_developers_map()), "DEVELOPERS.md (The layout)"
        elif not listed & modules:
            continue  # a package without a map (assets/)
        out += [f"{where}: {name}" for name in sorted(modules - listed)]
    return out


def test_every_module_is_in_its_packages_map():
    missing = missing_from_maps()
    assert not missing, (
        "these modules are missing from their package's map (the __init__.py "
        "docstring, one line a module; for speechlstm/ itself, DEVELOPERS.md's "
        "layout):\n  " + "\n  ".join(missing)
    )


# -- generated references ----------------------------------------------------


def _settings_reference(flag: str) -> subprocess.CompletedProcess:
    script = ROOT / "scripts" / "settings_reference.py"
    return subprocess.run(
        [sys.executable, str(script), flag], capture_output=True, text=True, timeout=60
    )


def test_the_settings_reference_is_current():
    # docs/training.md's settings table is rendered from speechlstm/config.py's
    # field comments; a field added, removed, renamed, re-defaulted or
    # re-commented there changes it.
    done = _settings_reference("--check")
    assert done.returncode == 0, (
        done.stdout + done.stderr + "\nThe settings table in docs/training.md is generated: "
        "run `make docs` (python scripts/settings_reference.py) and commit the result."
    )


def test_every_setting_says_what_it_does():
    # The reference is only as good as its comments: a new field without one
    # would be an empty cell in docs/training.md.
    done = _settings_reference("--undocumented")
    assert done.returncode == 0 and done.stdout.strip() == "", (
        "settings without a comment in speechlstm/config.py:\n" + done.stdout
    )


def test_every_package_ships_in_the_wheel():
    # pyproject lists its packages by name: a subpackage missing there is
    # missing from the wheel (speechlstm.detect once was: `info` failed there).
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "speechlstm").rglob("__init__.py")
    }
    assert found - listed == set(), f"add these to pyproject.toml's packages: {found - listed}"
