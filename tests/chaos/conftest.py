"""Prints the fault scenarios' report table at the end of the pytest run."""

from __future__ import annotations

import pytest

from tests.chaos.report import REPORTS, table


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    terminalreporter.section("fault injection report")
    for line in table(REPORTS):
        terminalreporter.write_line(line)
