"""Rules of the repository that the linters cannot see."""
from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", *patterns], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    return [ROOT / p for p in out if (ROOT / p).is_file()]


def _environ_writes(tree: ast.AST) -> list[int]:
    """Lines that assign to, delete from, or call a mutating method of os.environ (or putenv/unsetenv)."""
    def is_environ(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ" or (
            isinstance(node, ast.Name) and node.id == "environ")

    lines = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        if any(isinstance(t, ast.Subscript) and is_environ(t.value) for t in targets):
            lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if is_environ(f.value) and f.attr in {"update", "setdefault", "pop", "popitem", "clear", "__setitem__"}:
                lines.append(node.lineno)
            if f.attr in {"putenv", "unsetenv"}:
                lines.append(node.lineno)
    return lines


def test_engine_never_writes_the_environment():
    found = {str(p.relative_to(ROOT)): lines for p in _tracked("engine/*.py", "engine/**/*.py")
             if (lines := _environ_writes(ast.parse(p.read_text())))}
    assert found == {}, f"os.environ written in engine/: {found}"


def test_the_environment_check_sees_writes():
    sample = ("import os\nos.environ['A'] = '1'\nos.environ.setdefault('B', '2')\ndel os.environ['A']\n"
              "os.putenv('C', '')\n")
    assert sorted(_environ_writes(ast.parse(sample))) == [2, 3, 4, 5]


def test_nothing_cites_the_field_guide():
    """Code and docs cite docs/SPEC.md; the guide the project started from is not in the repository."""
    marker = "GUIDE" + " §"  # split so that this file does not match itself
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in _tracked() if p.suffix not in {".onnx", ".dat", ".png", ".mat"}
            for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if marker in line]
    assert hits == [], "cite docs/SPEC.md instead: " + ", ".join(hits[:20])
