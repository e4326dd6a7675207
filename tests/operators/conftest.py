"""Fixtures of the operator's unit tests: sample images, a fake hook, the operator's log."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from airflow_capillary.operators.upload_image import UploadImageOperator
from tests.operators.fakes import NAMES, OPERATOR_LOGGER, FakeHook
from tests.operators.images import write_images


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder with a PNG, a JPEG, a WebP (``NAMES``) and a text file."""
    write_images(tmp_path / "imgs", [*NAMES, "readme.txt"])
    return tmp_path / "imgs"


@pytest.fixture
def fake_hook(mocker: Any) -> FakeHook:
    """Every UploadImageOperator uses this fake hook."""
    hook = FakeHook()
    mocker.patch.object(UploadImageOperator, "hook", new=hook)
    return hook


@pytest.fixture
def oplog(mocker: Any, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Route the operator's log (structlog in the task SDK) to a stdlib logger caplog sees."""
    mocker.patch.object(UploadImageOperator, "log", new=logging.getLogger(OPERATOR_LOGGER))
    caplog.set_level(logging.DEBUG, logger=OPERATOR_LOGGER)
    return caplog
