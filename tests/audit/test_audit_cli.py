"""`aigi audit`: the table, the report files, --neutralize, file names never read as markup."""

from __future__ import annotations

import json

from audit_data import build
from typer.testing import CliRunner

from aigi.cli import app


def test_cli_audit_report_and_neutralize(tmp_path):
    root = build(tmp_path / "data", "format", n=10)
    (root / "0_real" / "[red]odd.png").write_bytes(b"")  # a broken file with markup in its name
    res = CliRunner().invoke(app, ["audit", str(tmp_path / "data"), "--output", str(tmp_path / "rep"),
                                   "--bootstrap", "20", "--neutralize", str(tmp_path / "clean"), "--size", "32"])
    assert res.exit_code == 3, res.output  # the broken file was skipped: exit 3 says so
    assert "│ shortcut" in res.output and "[red]odd.png" in res.output and "skipped" in res.output
    md = (tmp_path / "rep" / "audit.md").read_text()
    assert "| format | **shortcut**" in md and "format = JPEG: 100% of reals, 0% of fakes" in md
    html = (tmp_path / "rep" / "audit.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "src=\"http" not in html
    assert json.loads((tmp_path / "rep" / "audit.json").read_text())["subsets"]["format"]["verdict"] == "shortcut"
    assert (tmp_path / "rep" / "attributes.csv").read_text().count("\n") == 21  # header + 20 readable files
    assert json.loads((tmp_path / "clean" / "neutralize.json").read_text())["settings"]["size"] == 32
    again = CliRunner().invoke(app, ["audit", str(tmp_path / "clean"), "--bootstrap", "20", "--pixels"])
    assert again.exit_code == 0 and "│ clean " in again.output and "│ shortcut" not in again.output, again.output


def test_cli_audit_errors(tmp_path):
    res = CliRunner().invoke(app, ["audit", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "error" in res.output
    build(tmp_path / "d", "clean", n=4)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("keep me")
    res = CliRunner().invoke(app, ["audit", str(tmp_path / "d"), "--neutralize", str(tmp_path / "out")])
    assert res.exit_code == 1 and "not an empty folder" in res.output
