"""The package's folders are its architecture, and imports run one way between them (realtime_voting/__init__.py):
``core`` imports nothing else of the package, ``services`` only ``core``, a stage only ``core``, ``services`` and the
stages below it (the web app's ballot page casts through ``voting``), and ``running`` anything."""

from __future__ import annotations

import ast

import pytest

from realtime_voting.core.settings import REPO_ROOT

PACKAGE = REPO_ROOT / "realtime_voting"
# Each folder, and the folders its modules may import.
MAY_IMPORT = {
    "core": {"core"},
    "services": {"core", "services"},
    "seeding": {"core", "services", "seeding"},
    "voting": {"core", "services", "voting"},
    "counting": {"core", "services", "counting"},
    "web": {"core", "services", "voting", "web"},
    "running": {"core", "services", "seeding", "voting", "counting", "web", "running"},
}


def folders_imported(path) -> set[str]:
    """The package's folders that a module imports (``from realtime_voting.<folder>...``)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "realtime_voting" and len(parts) > 1:
                imported.add(parts[1])
    return imported


def test_every_module_lives_in_a_folder_of_the_architecture():
    loose = [path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py"]
    assert not loose, f"modules beside the folders: {loose}"
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"} == set(
        MAY_IMPORT)


@pytest.mark.parametrize("folder", sorted(MAY_IMPORT))
def test_imports_run_one_way_between_the_folders(folder):
    wrong = {str(path.relative_to(PACKAGE)): sorted(folders_imported(path) - MAY_IMPORT[folder])
             for path in (PACKAGE / folder).rglob("*.py")}
    assert not {module: folders for module, folders in wrong.items() if folders}, wrong
