"""docs/configuration.md is exactly what the code generates: no setting or flag goes undocumented."""

from __future__ import annotations

import runpy
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_reference_matches_the_code() -> None:
    generator = runpy.run_path(str(DOCS / "generate_configuration.py"))
    expected = generator["render"]()
    assert (DOCS / "configuration.md").read_text() == expected, (
        "docs/configuration.md is stale: run `python docs/generate_configuration.py`"
    )
