"""Every error a client can see carries its protocol code and data."""

from __future__ import annotations

from pathlib import Path

from podlink import protocol
from podlink.build import NoBuildCommand
from podlink.config import ConfigError
from podlink.errors import PodlinkError
from podlink.session.registry import SessionNotFound
from podlink.targets.base import FileLine, TargetUnavailable
from podlink.targets.docker.build import BuildFailure
from podlink.testing.report import InvalidTestRequest


def test_a_config_error_names_file_line_and_key_in_its_data(tmp_path: Path) -> None:
    error = ConfigError(tmp_path / "podlink.yaml", "not a port", line=4, key="ports[0]")
    assert error.code is protocol.ErrorCode.CONFIG_INVALID
    assert error.data == {
        "reason": "configInvalid",
        "detail": {"file": str(tmp_path / "podlink.yaml"), "line": 4, "key": "ports[0]"},
    }


def test_a_missing_session_names_its_id() -> None:
    error = SessionNotFound("abc")
    assert error.code is protocol.ErrorCode.SESSION_NOT_FOUND
    assert error.data == {"reason": "sessionNotFound", "detail": {"sessionId": "abc"}}
    assert str(error) == "no session with id 'abc'; listSessions shows the running ones"


def test_errors_without_detail_send_only_their_reason() -> None:
    assert TargetUnavailable("no Docker Engine").data == {"reason": "targetUnavailable"}
    assert NoBuildCommand("no build: section").data == {"reason": "invalidParams"}
    assert InvalidTestRequest("run 1 is still going").code is protocol.ErrorCode.INVALID_PARAMS


def test_a_failed_image_build_is_a_target_error_at_its_dockerfile_line(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    failure = BuildFailure(dockerfile, "RUN false returned 1", line=9, step=4)
    assert isinstance(failure, TargetUnavailable) and isinstance(failure, PodlinkError)
    assert failure.at == FileLine(dockerfile, 9, "RUN false returned 1")
    assert str(failure) == f"{dockerfile}:9: the image build failed: RUN false returned 1"


def test_a_build_failure_without_a_step_points_at_no_line(tmp_path: Path) -> None:
    failure = BuildFailure(tmp_path / "Dockerfile", "the Engine reported no image")
    assert failure.at is None
    assert str(failure).endswith("Dockerfile: the image build failed: the Engine reported no image")
