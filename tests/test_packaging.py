"""Packaging metadata agrees with itself and with the code.

``pyproject.toml`` is the single source of the dependencies; the requirement files that ``make venv`` installs
repeat them, and these tests fail as soon as the two drift apart, a console script points nowhere, or the code
imports a third-party package that is not declared.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]

#: The project's own top-level packages.
OWN_PACKAGES = {"datapipe", "training"}
#: Packages that the code imports only when asked for (a Keras backend, MPI, architecture drawing).
OPTIONAL_IMPORTS = {"jax", "torch", "mpi4py", "pydot"}
#: Import name → distribution name, where they differ or should be stated (import names not listed map to
#: themselves).
IMPORT_TO_DISTRIBUTION = {
    "numpy": "numpy",
    "scipy": "scipy",
    "pixell": "pixell",
    "ducc0": "ducc0",
    "camb": "camb",
    "symlens": "symlens",
    "sympy": "sympy",
    "h5py": "h5py",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",
    "keras": "keras",
    "tensorflow": "tensorflow",
}
#: Declared dependencies that the code does not import itself, and why they are declared.
INDIRECT_DEPENDENCIES = {"sympy": "symlens imports it but does not declare it"}
#: The console scripts every install provides.
CONSOLE_SCRIPTS = {"resunet-simulate", "resunet-train", "resunet-evaluate", "resunet-predict"}


def canonical(name: str) -> str:
    """Distribution name normalized as PEP 503 does (``Foo_Bar.baz`` → ``foo-bar-baz``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_key(text: str) -> tuple[str, tuple[str, ...], str, str]:
    """(normalized name, extras, specifier set, marker) of a requirement string, comparable across spellings."""
    req = Requirement(text)
    return canonical(req.name), tuple(sorted(req.extras)), str(req.specifier), str(req.marker or "")


def keyed(requirements: list[str], source: str) -> dict[str, tuple]:
    """Requirements by normalized name; a name listed twice must carry the same specifier both times."""
    out: dict[str, tuple] = {}
    for text in requirements:
        key = requirement_key(text)
        if key[0] in out and out[key[0]] != key:
            pytest.fail(f"{source}: {key[0]} is listed twice with different specifiers: {out[key[0]]} and {key}")
        out[key[0]] = key
    return out


def read_requirement_file(path: Path) -> list[str]:
    """The requirement strings of a pip requirement file, following ``-r`` includes."""
    requirements = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            requirements += read_requirement_file(path.parent / line.split(maxsplit=1)[1])
        elif line.startswith("-"):
            pytest.fail(f"{path.name}:{number}: option {line!r} has no counterpart in pyproject.toml")
        else:
            requirements.append(line)
    return requirements


def test_runtime_requirement_files_equal_the_project_dependencies():
    declared = keyed(PROJECT["dependencies"], "pyproject.toml [project] dependencies")
    assert len(declared) == len(PROJECT["dependencies"]), "a dependency is listed twice in pyproject.toml"
    files = [*read_requirement_file(ROOT / "datapipe_requirements.txt"),
             *read_requirement_file(ROOT / "tensorflowtraining_requirements.txt")]
    union = keyed(files, "datapipe_requirements.txt + tensorflowtraining_requirements.txt")
    assert union == declared
    assert keyed(read_requirement_file(ROOT / "requirements.txt"), "requirements.txt") == declared


@pytest.mark.parametrize("filename,extra", [("requirements-dev.txt", "dev"), ("requirements-mpi.txt", "mpi")])
def test_optional_requirement_files_equal_their_extras(filename, extra):
    extras = PROJECT["optional-dependencies"]
    assert extra in extras, f"pyproject.toml has no [project.optional-dependencies] {extra}"
    assert keyed(read_requirement_file(ROOT / filename), filename) == keyed(extras[extra], f"extra {extra!r}")


def test_console_scripts_point_at_main_functions():
    scripts = PROJECT["scripts"]
    assert set(scripts) == CONSOLE_SCRIPTS
    for name, target in scripts.items():
        module_name, _, attribute = target.partition(":")
        function = importlib.import_module(module_name)
        for part in attribute.split("."):
            function = getattr(function, part)
        assert callable(function), f"{name} = {target} is not callable"
        assert "argv" in inspect.signature(function).parameters, f"{target} should be main(argv=None) -> int"


def test_license_and_citation():
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License") and "Copyright (c)" in license_text
    citation = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert "2101.01214" in citation
    try:
        import yaml
    except ModuleNotFoundError:  # no YAML reader here: the text checks above and below must do
        assert "cff-version: 1.2.0" in citation and "preferred-citation:" in citation
        return
    cff = yaml.safe_load(citation)
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    paper = cff["preferred-citation"]
    assert paper["type"] == "article" and paper["title"] == "Reconstructing Patchy Reionization with Deep Learning"
    assert [author["family-names"] for author in paper["authors"]] == ["Guzman", "Meyers"]
    assert "2101.01214" in paper["url"]


def imported_top_level_names(folder: Path) -> dict[str, set[str]]:
    """Top-level module names imported anywhere in ``folder``'s Python files → the files importing them."""
    names: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                names.setdefault(module.partition(".")[0], set()).add(str(path.relative_to(ROOT)))
    return names


def test_every_third_party_import_is_declared_and_every_dependency_used():
    imported: dict[str, set[str]] = {}
    for package in sorted(OWN_PACKAGES):
        for name, files in imported_top_level_names(ROOT / package).items():
            imported.setdefault(name, set()).update(files)
    third_party = {name: files for name, files in imported.items()
                   if name not in sys.stdlib_module_names and name not in OWN_PACKAGES | OPTIONAL_IMPORTS}
    declared = {canonical(Requirement(text).name) for text in PROJECT["dependencies"]}
    missing = {name: sorted(files) for name, files in third_party.items()
               if canonical(IMPORT_TO_DISTRIBUTION.get(name, name)) not in declared}
    assert not missing, f"imported but not in pyproject.toml [project] dependencies: {missing}"
    used = {canonical(IMPORT_TO_DISTRIBUTION.get(name, name)) for name in third_party}
    unused = declared - used - set(INDIRECT_DEPENDENCIES)
    assert not unused, f"declared in pyproject.toml but imported nowhere in {sorted(OWN_PACKAGES)}: {unused}"


def test_package_discovery_finds_every_python_folder_and_the_package_data():
    setuptools = pytest.importorskip("setuptools")
    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    finder = setuptools.find_namespace_packages if find.get("namespaces", True) else setuptools.find_packages
    found = set(finder(where=str(ROOT), include=find["include"]))
    folders = {path.parent for package in OWN_PACKAGES for path in (ROOT / package).rglob("*.py")
               if "__pycache__" not in path.parts}
    expected = {".".join(folder.relative_to(ROOT).parts) for folder in folders}
    assert expected <= found, f"not installed: {sorted(expected - found)}"
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            assert list((ROOT / package.replace(".", "/")).glob(pattern)), f"package data {package}/{pattern} is empty"


def test_makefile_installs_the_requirement_files():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for filename in ("requirements.txt", "requirements-dev.txt", "requirements-mpi.txt"):
        assert f"-r {filename}" in makefile, filename
    referenced = set(re.findall(r"[\w.-]*requirements[\w.-]*\.txt", makefile))
    assert referenced and all((ROOT / name).is_file() for name in referenced), referenced
