"""The examples in docs/testing.md run, as a user's own pytest suite would run them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"

pytest_plugins = ["pytester"]


def test_docs_testing_examples_pass_in_a_users_suite(
    pytester: pytest.Pytester, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conftest, *tests = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    pytester.makeconftest(conftest)
    for index, source in enumerate(tests):
        pytester.makepyfile(**{f"test_docs_example_{index}": source})
    monkeypatch.setenv("PGQUEUE_TEST_DATABASE_URL", server_url)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
