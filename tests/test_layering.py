"""Dependencies point one way: common <- backends <- bench/tests.

Walks every import statement of the packages (static check) and imports each
``common`` module in a fresh interpreter (dynamic check, catches indirect imports).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "common": {"torch", "mxnet", "gluoncv", "gluonfr", "pytorch_metric_learning",
               "pytorch_impl", "gluon_impl", "bench"},
    "pytorch_impl": {"mxnet", "gluoncv", "gluonfr", "gluon_impl", "bench"},
    "gluon_impl": {"torch", "pytorch_metric_learning", "pytorch_impl", "bench"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_static_imports_respect_layers(package):
    files = package_files(package)
    assert files, f"package {package} has no modules"
    bad = []
    for path in files:
        hits = imported_roots(path) & FORBIDDEN[package]
        bad += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(hits)]
    assert not bad, "layering violated:\n" + "\n".join(bad)


def test_walker_sees_violations(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\nfrom torch import nn\nimport mxnet.ndarray as nd\nfrom . import x\n"
    )
    assert imported_roots(probe) == {"os", "torch", "mxnet"}


def test_common_imports_no_framework_at_runtime():
    modules = [
        "common." + p.relative_to(ROOT / "common").with_suffix("").as_posix().replace("/", ".")
        for p in package_files("common")
        if p.name != "__init__.py"
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(k for k in ('torch', 'mxnet', 'gluoncv') if k in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing common pulled in: {out.stdout.strip()}"


# ---- inside bench/: wings that import downwards only, no private name crossing a module ------

# wing -> the bench wings it may import (commands sits on top; report imports only itself)
BENCH_WINGS = {
    "report": {"report"},
    "run": {"run", "report", "runtime"},
    "real": {"real", "report"},
    "perf": {"perf", "report", "runtime"},
    "regime": {"regime", "run", "report"},
    "tune": {"tune", "run", "report"},
}


def bench_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported bench module, names taken from it) for each ``from bench...`` / ``import``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "bench":
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "bench"]
    return out


def test_bench_wings_import_downwards_and_no_private_names():
    bad = []
    for path in package_files("bench"):
        rel = path.relative_to(ROOT / "bench").parts
        wing = rel[0] if len(rel) > 1 else None
        for module, names in bench_imports(path):
            parts = module.split(".")
            target = parts[1] if len(parts) > 1 else None
            if wing in BENCH_WINGS and target and target not in BENCH_WINGS[wing]:
                bad.append(f"bench/{'/'.join(rel)} (wing {wing}) imports {module}")
            for name in names:
                if name.startswith("_"):
                    bad.append(f"bench/{'/'.join(rel)} takes the private {module}.{name}")
    assert not bad, "\n".join(bad)
