"""Rules the test suite keeps: no test can hang on a child process.

Every ``subprocess.run`` / ``check_output`` / ``check_call`` / ``call`` in tests/ passes ``timeout=``, and every
``subprocess.Popen`` is waited for with a timeout (``.wait(timeout=...)`` or ``.communicate(timeout=...)``) in the
same function.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
BLOCKING = {"run", "check_output", "check_call", "call"}


def _subprocess_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id == "subprocess":
                yield node


def _has_timeout(call: ast.Call) -> bool:
    return any(keyword.arg == "timeout" for keyword in call.keywords)


def test_every_subprocess_call_in_the_tests_has_a_timeout():
    offenders = []
    for path in sorted(TESTS.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for call in _subprocess_calls(tree):
            where = f"{path.name}:{call.lineno}"
            if call.func.attr in BLOCKING and not _has_timeout(call):
                offenders.append(f"{where} subprocess.{call.func.attr} without timeout=")
            elif call.func.attr == "Popen":
                scope = next((f for f in functions if f.lineno <= call.lineno <= f.end_lineno), tree)
                waited = [c for c in ast.walk(scope) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                          and c.func.attr in ("wait", "communicate") and _has_timeout(c)]
                if not waited:
                    offenders.append(f"{where} subprocess.Popen never waited for with a timeout")
    assert not offenders, "\n".join(offenders)
