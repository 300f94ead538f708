"""No module under tests/ imports a test module or a conftest (issue 21).

Shared helpers live in tests/helpers (and the other plain modules: tests/oracle.py,
tests/chaos/cluster.py, tests/signals/*); shared fixtures come through ``pytest_plugins``
in tests/conftest.py. Importing a test module runs its collection-time code and ties
suites together; importing a conftest registers its fixtures twice."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _forbidden(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return last == "conftest" or last.startswith("test_")


def forbidden_imports(source: str, package: str) -> list[str]:
    """The modules ``source`` (a module of ``package``) imports that are test modules or
    conftests, at any depth of the code (function-level imports too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if base and _forbidden(base):
                found.append(base)
            # ``from tests.unit import test_fastpath``, ``from . import conftest``
            found += [f"{base}.{a.name}" for a in node.names if _forbidden(a.name)]
    return found


def test_the_checker_finds_every_form_of_import() -> None:
    pkg = "tests.unit"
    assert forbidden_imports("from tests.unit.test_fastpath import mutants", pkg)
    assert forbidden_imports("import tests.integration.conftest", pkg)
    assert forbidden_imports("def f():\n    from tests.integration.test_web_view import x", pkg)
    assert forbidden_imports("from tests.chaos import test_poison_input", pkg)
    assert forbidden_imports("from .test_fastpath import mutants", pkg) == [
        "tests.unit.test_fastpath"]
    assert forbidden_imports("from ..integration.conftest import produce", pkg) == [
        "tests.integration.conftest"]
    assert forbidden_imports("from . import conftest", pkg) == ["tests.unit.conftest"]
    assert not forbidden_imports(
        "from tests.helpers.processes import Worker\nfrom tests import oracle\n"
        "import pytest\nfrom tests.chaos.cluster import metrics_text", pkg)


def test_no_module_under_tests_imports_a_test_module_or_a_conftest() -> None:
    offenders = {}
    for path in sorted(TESTS.rglob("*.py")):
        rel = path.relative_to(TESTS.parent)
        package = ".".join(rel.parent.parts)
        found = forbidden_imports(path.read_text(encoding="utf-8"), package)
        if found:
            offenders[str(rel)] = found
    assert not offenders, offenders
    assert len(list(TESTS.rglob("test_*.py"))) > 40  # it did look at the suites
