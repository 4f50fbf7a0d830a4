"""The package's description agrees with itself: pyproject.toml, requirements*.txt, the imports and the Python version.

pyproject.toml declares the pins; requirements.txt (what the Docker image installs) and requirements-dev.txt (what
`make setup` installs) repeat them for pip's `-r`. These tests keep the three in step, check that every third-party
module the code imports is declared, and that the Python version is stated in one place. They need no service.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())

# Modules imported directly that come with a declared package, which pins or bounds them itself: declaring them
# again would be a second pin to keep in step. (Each pairing is checked below against the carrier's metadata.)
COMES_WITH = {
    "py4j": "pyspark",  # pyspark's bridge to the JVM; counting/job.py catches its errors
    "altair": "streamlit",  # the dashboard's charts, Streamlit's own chart library
    "packaging": "pytest",  # requirement strings parsed as pip parses them, in this file
}


def normalised(name: str) -> str:
    """A distribution's name as PyPI compares names (PEP 503): Faker and faker, PyYAML and pyyaml are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: list[str]) -> dict[str, str]:
    """{normalised name: version} of requirement strings that must each pin one version (`name==version`)."""
    pinned = {}
    for line in requirements:
        requirement = Requirement(line)
        operators = [spec.operator for spec in requirement.specifier]
        assert operators == ["=="], f"{line!r} is not pinned to one version (name==version)"
        pinned[normalised(requirement.name)] = next(iter(requirement.specifier)).version
    return pinned


def requirements_file(name: str) -> list[str]:
    """The requirement lines of one requirements file, without comments, blank lines and `-r` includes."""
    lines = [line.split("#", 1)[0].strip() for line in (REPO_ROOT / name).read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-")]


def third_party_imports(*folders: str) -> dict[str, set[Path]]:
    """{top-level module: files importing it} of every .py under the folders, leaving out the standard library
    and the repository's own modules (realtime_voting, bench, tests, the top-level scripts)."""
    own = {path.stem for path in REPO_ROOT.glob("*.py")} | {path.name for path in REPO_ROOT.iterdir() if path.is_dir()}
    imports: dict[str, set[Path]] = {}
    for folder in folders:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in own:
                        imports.setdefault(top, set()).add(path.relative_to(REPO_ROOT))
    return imports


def undeclared(imports: dict[str, set[Path]], declared: set[str]) -> list[str]:
    """The imports that no declared distribution provides, each with the files that import it."""
    providers = packages_distributions()
    missing = []
    for module, files in sorted(imports.items()):
        distributions = {normalised(name) for name in providers.get(module, [module])}
        carrier = COMES_WITH.get(module)
        if not distributions & declared and not (carrier and normalised(carrier) in declared):
            missing.append(f"{module} (from {sorted(distributions)}), imported by {sorted(map(str, files))}")
    return missing


RUNTIME = pins(PYPROJECT["project"]["dependencies"])
DEV = pins(PYPROJECT["project"]["optional-dependencies"]["dev"])


def test_runtime_pins_of_pyproject_are_those_of_requirements_txt():
    assert pins(requirements_file("requirements.txt")) == RUNTIME


def test_dev_pins_of_pyproject_are_those_of_requirements_dev_txt():
    assert pins(requirements_file("requirements-dev.txt")) == DEV
    assert "-r requirements.txt" in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines(), (
        "requirements-dev.txt must include the runtime pins, as pyproject's dev extra comes on top of them")


def test_no_package_is_pinned_both_as_runtime_and_as_dev():
    assert not RUNTIME.keys() & DEV.keys()


def test_every_third_party_module_the_package_imports_is_a_runtime_dependency():
    assert undeclared(third_party_imports("realtime_voting"), set(RUNTIME)) == []


def test_every_third_party_module_the_tests_and_the_bench_import_is_declared():
    assert undeclared(third_party_imports("tests", "bench"), set(RUNTIME) | set(DEV)) == []


def test_each_module_said_to_come_with_a_package_is_one_of_its_requirements():
    providers = packages_distributions()
    for module, carrier in COMES_WITH.items():
        carried = {normalised(Requirement(line).name) for line in requires(carrier) or []}
        assert {normalised(name) for name in providers[module]} & carried, f"{carrier} does not require {module}"


def test_every_folder_of_the_package_is_packaged():
    packaged = set(PYPROJECT["tool"]["setuptools"]["packages"])
    folders = {".".join(path.parent.relative_to(REPO_ROOT).parts)
               for path in (REPO_ROOT / "realtime_voting").rglob("*.py") if "__pycache__" not in path.parts}
    assert folders == packaged


def test_the_python_version_is_stated_once_and_followed():
    match = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert match, "requires-python should be a lower bound, >=X.Y"
    major, minor = match.groups()
    assert PYPROJECT["tool"]["ruff"]["target-version"] == f"py{major}{minor}"
    assert "requires-python" in (REPO_ROOT / "Makefile").read_text(), "the Makefile's check reads pyproject.toml"
    assert f"python{major}.{minor}/site-packages" in (REPO_ROOT / "Dockerfile").read_text(), (
        "the image's Python (Debian's python3) is the version the pins need")
    stated = set(re.findall(r"Python (\d+\.\d+)", (REPO_ROOT / "README.md").read_text()))
    assert stated == {f"{major}.{minor}"}, f"the README names Python {sorted(stated)}"
    assert sys.version_info >= (int(major), int(minor))
