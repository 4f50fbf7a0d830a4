"""What each ``make`` target installs before it runs: starting the stack needs the .venv and the jars, never a browser
or apt (a held apt lock once failed a fresh ``make test`` at that step); the tests also install Debian's packages
that some of them need (Chromium, a PostgreSQL server with TLS); and every target that tests lints first.
``make --dry-run`` prints every command a target would run, its prerequisites' included, and runs none of them."""

from __future__ import annotations

import pytest

from realtime_voting.running import processes


def planned(target: str) -> str:
    result = processes.run_program(["make", "--dry-run", "--no-print-directory", target], timeout_s=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("target", ["up", "demo", "bench"])
def test_starting_the_stack_needs_no_browser_and_no_apt(target):
    plan = planned(target)
    assert "local_stack up" in plan, f"make {target} does not start the stack:\n{plan}"
    assert "apt-get" not in plan and "chromium" not in plan, f"make {target} would install Chromium:\n{plan}"


@pytest.mark.parametrize("target", ["setup", "test"])
def test_setup_and_the_tests_install_the_tools_some_tests_need(target):
    plan = planned(target)
    assert "apt-get" in plan and "chromium" in plan and "postgresql" in plan, plan


@pytest.mark.parametrize("target", ["lint", "test", "test-fast"])
def test_the_linters_check_the_code_and_the_compose_file_before_any_test(target):
    plan = planned(target)
    assert "ruff check" in plan and "compose_lint" in plan, f"make {target} skips a linter:\n{plan}"
    if "pytest" in plan:
        assert plan.index("compose_lint") < plan.index("pytest"), f"make {target} tests before it lints:\n{plan}"
