"""pyproject.toml metadata in the forms setuptools keeps accepting (the `license` table goes on 2027-02-18)."""

from __future__ import annotations

import tomllib

from tests.helpers import ROOT


def test_the_license_is_an_spdx_string_with_its_file_and_a_setuptools_that_reads_that_form() -> None:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = doc["project"]

    # an SPDX expression, not the deprecated {text = ...} table, and no License classifier beside it (refused)
    assert project["license"] == "Apache-2.0"
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]
    # every license file named exists and is the Apache 2.0 text
    assert project["license-files"] == ["LICENSE"]
    assert "Apache License\n                           Version 2.0, January 2004" in (ROOT / "LICENSE").read_text(
        encoding="utf-8")
    # setuptools reads both fields from 77 on
    assert doc["build-system"]["requires"] == ["setuptools>=77"]
