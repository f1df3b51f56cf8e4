"""Every registration names the task its paper targets, and `aigi list` prints it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from aigi.cli import app
from aigi.detectors import list_detectors, register
from aigi.detectors.registry import AIGI, FACE_FORGERY, TASKS, detector_tasks


def test_every_detector_has_a_known_task():
    tasks = detector_tasks()
    assert set(tasks) == set(list_detectors())
    for name, ts in tasks.items():
        assert ts and set(ts) <= set(TASKS), name


def test_face_forgery_methods_are_marked():
    tasks = detector_tasks()
    assert tasks["masm"] == (FACE_FORGERY,)
    assert tasks["selop"] == (FACE_FORGERY,)
    assert tasks["effort"] == (AIGI, FACE_FORGERY)  # the paper evaluates on both
    for name in ("nsnet", "pinclip", "causalclip", "npr", "cnnspot", "univfd"):
        assert tasks[name] == (AIGI,)


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="task must be one or more of"):
        register("x-unknown-task", task="video")


def test_list_command_shows_the_task():
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.strip().startswith("selop"))
    assert FACE_FORGERY in line
    line = next(ln for ln in result.output.splitlines() if ln.strip().startswith("npr"))
    assert AIGI in line
