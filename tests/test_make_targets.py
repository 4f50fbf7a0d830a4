"""What each ``make`` target installs before it runs: starting the stack needs the .venv and the jars, never a browser
or apt (a held apt lock once failed a fresh ``make test`` at that step); the tests, the browser test among them, also
install Chromium; and every target that tests lints first. ``make --dry-run`` prints every command a target would run,
its prerequisites' included, and runs none of them."""

from __future__ import annotations

import subprocess

import pytest

from realtime_voting.settings import REPO_ROOT


def planned(target: str) -> str:
    command = ["make", "--dry-run", "--no-print-directory", target]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603 - make from PATH, as a user runs it, fixed arguments
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("target", ["up", "demo", "bench"])
def test_starting_the_stack_needs_no_browser_and_no_apt(target):
    plan = planned(target)
    assert "local_stack up" in plan, f"make {target} does not start the stack:\n{plan}"
    assert "apt-get" not in plan and "chromium" not in plan, f"make {target} would install Chromium:\n{plan}"


@pytest.mark.parametrize("target", ["setup", "test"])
def test_setup_and_the_tests_install_chromium_for_the_browser_test(target):
    assert "apt-get" in planned(target)


@pytest.mark.parametrize("target", ["lint", "test", "test-fast"])
def test_the_linters_check_the_code_and_the_compose_file_before_any_test(target):
    plan = planned(target)
    assert "ruff check" in plan and "compose_lint" in plan, f"make {target} skips a linter:\n{plan}"
    if "pytest" in plan:
        assert plan.index("compose_lint") < plan.index("pytest"), f"make {target} tests before it lints:\n{plan}"
