# Generated from protocol/schema.json by protocol/generate.py; do not edit.
"""The podlink protocol: the messages between the daemon and its clients, as types.

Structs are frozen msgspec structs. Their snake_case attributes travel as the camelCase
names of the protocol (``last_latency_ms`` is ``lastLatencyMs``), absent optional fields
are left out of the JSON, and arrays decode to tuples. String unions are ``Literal``
aliases. ``REQUESTS`` and ``NOTIFICATIONS`` map each method to its params and result
types; ``ErrorCode`` and ``ERROR_REASONS`` give the errors. ``PodlinkHandlers`` is the
typed handler of every request and ``bind`` registers one with a server, so a missing
or mistyped handler is a type error. The reference is
protocol/README.md; the source is protocol/schema.json.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import msgspec

PROTOCOL_VERSION = 1
"""The version clients find under capabilities.experimental.podlink.protocolVersion."""

DocumentUri = str
"""A URI as LSP writes it; for paths on this machine, a `file:` URI."""

SessionState = Literal["starting", "syncing", "ready", "degraded", "stopped"]
"""Where a session is in its life; degraded means running with a part (sync, a port, the app)
failing.
"""

TargetKind = Literal["local", "docker", "kubernetes"]
"""What kind of target a session syncs into."""

SyncState = Literal["idle", "scanning", "syncing", "conflict", "error", "paused"]
"""What the sync is doing; paused means halted for safety until podlink/resumeSync."""

PortForwardState = Literal["active", "reconnecting", "error"]
"""Whether a port forward is carrying connections."""

AppState = Literal["running", "exited", "restarting", "stopped"]
"""Whether the app process is up; stopped means stopped on request, exited means it ended by itself.
"""

TestOutcome = Literal["passed", "failed", "skipped", "errored", "xfailed", "xpassed"]
"""How one test ended, as pytest's own summary counts it: errored means it could not run to a
verdict (a failing fixture, a file that cannot be collected); xfailed means it failed as an xfail
mark (or `pytest.xfail()`) expected, xpassed that it passed although a non-strict xfail mark
expected it to fail (a strict one that passes is failed). A file skipped as a whole at collection
(`pytest.importorskip`, `pytest.skip(allow_module_level=True)`) is one skipped result under the
file's id. More outcomes may be added without a version bump: a client should show one it does not
know as it shows skipped (ended, neither passed nor failed), with its message.
"""

LogSource = Literal["app", "sync", "build", "test", "daemon"]
"""Which part of a session produced a log line."""

LogLevel = Literal["debug", "info", "warning", "error"]
"""How much a log message matters: the daemon decides, so clients need not guess from the text."""

DiagnosticSource = Literal["podlink-test", "podlink-build", "podlink-sync"]
"""The `source` of the diagnostics podlink publishes: test failures, build errors and sync conflicts
(on the conflicting file, while its conflict copy exists).
"""

ErrorReason = Literal[
    "parseError",
    "invalidRequest",
    "invalidParams",
    "configInvalid",
    "targetUnavailable",
    "sessionNotFound",
    "timeout",
    "conflict",
    "notImplemented",
]
"""The reason in the data of a podlink error; one per error code."""


class Session(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """A workspace folder kept in sync with a target, with its port forwards and app."""

    id: str
    """The session's id, which other requests take as sessionId."""
    folder: DocumentUri
    """The local workspace folder."""
    state: SessionState
    """Where the session is in its life."""
    target: TargetInfo
    """The target the folder is synced into."""
    sync: SyncStatus
    """The state of the sync."""
    ports: tuple[PortForward, ...]
    """The port forwards."""
    app: AppProcess | None = None
    """The app process, when the session runs one."""
    error: str | None = None
    """Why the session is degraded or stopped, when it is."""


class TargetInfo(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """The target a session syncs into."""

    kind: TargetKind
    """The kind of target."""
    name: str
    """The target's name, for showing to the user."""
    detail: dict[str, Any] | None = None
    """Facts that depend on the kind of target, such as a context, namespace or image."""


class SyncStatus(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """The state of a session's sync."""

    state: SyncState
    """What the sync is doing."""
    pending: int
    """Changes seen but not yet applied."""
    files_synced: int
    """Files copied since the session started."""
    bytes_synced: int
    """Bytes copied since the session started."""
    last_latency_ms: float | None = None
    """Milliseconds from the last change being seen to it being applied."""
    conflicts: tuple[SyncIssue, ...]
    """Paths changed on both sides that the sync will not resolve by itself."""
    problems: tuple[SyncIssue, ...]
    """Paths that could not be synced."""
    ignored: IgnoredPaths | None = None
    """What the ignore rules keep out of the target, as of the last scan of the whole workspace;
    absent before the first one.
    """


class IgnoredPaths(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """What the user's ignore rules (`.gitignore` and `.podlinkignore` files, `sync[].exclude`) keep
    out of the target. podlink's own exclusions (`.git/`, `.podlink/`) are not counted;
    podlink/explainPath says why any one path is left out.
    """

    files: int
    """Files left out."""
    folders: int
    """Folders left out whole; what they hold is not looked into or counted."""
    examples: tuple[str, ...]
    """The first few of those paths, relative to the workspace folder; folders end with `/`."""


class IgnoreRule(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """One rule of an ignore file or of a sync entry's exclude list."""

    source: str
    """Where the rule is written: an ignore file's path relative to the workspace folder,
    `podlink.yaml` (or the config file in use) for `sync[].exclude`, or `built-in` for what podlink
    never syncs.
    """
    line: int | None = None
    """The 1-based line in that ignore file, or the 1-based position in the exclude list."""
    pattern: str
    """The rule as written."""


class PathExplanation(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """Whether a local path is synced into the target and, if not, which rule keeps it out."""

    uri: DocumentUri
    """The path asked about."""
    synced: bool
    """Whether the sync carries it into the target (when it exists)."""
    remote_path: str | None = None
    """Where it is, or would be, in the target, when a sync entry holds it."""
    rule: IgnoreRule | None = None
    """The rule that decided: the one that excludes it, or a `!` rule that brought it back."""
    excluded_folder: str | None = None
    """When a folder above the path is what the rule excludes: that folder, relative to the
    workspace folder (gitignore brings nothing below an excluded folder back).
    """
    message: str
    """The answer in one sentence, for showing to the user."""


class SyncIssue(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """A path the sync has something to say about."""

    path: str
    """The path, relative to the sync root."""
    message: str
    """What is wrong, for showing to the user."""
    copy_path: str | None = None
    """For a conflict: where the target's version was saved in the workspace (relative to the sync
    root), to compare with the local file.
    """
    entry: str | None = None
    """The sync root the paths are relative to: the sync entry's local folder, relative to the
    workspace folder (`.` for the folder itself) or absolute when it lies outside it.
    """


class PortForward(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """A forward from a local port to a port in the target."""

    local_port: int
    """The port on 127.0.0.1."""
    remote_port: int
    """The port in the target."""
    state: PortForwardState
    """Whether the forward is carrying connections."""
    connections: int
    """Connections open through the forward now."""
    error: str | None = None
    """Why the forward is reconnecting or failed, when it is."""


class AppProcess(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """The app a session runs in its target."""

    state: AppState
    """Whether the app is up."""
    command: tuple[str, ...]
    """The command line the app runs, one argument per item."""
    exit_code: int | None = None
    """The exit code of the last run, once it has ended."""


class TestItem(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """A test or a group of tests, as a tree."""

    id: str
    """The runner's own id with file paths relative to the workspace folder; for pytest, the node id
    such as `tests/test_api.py::test_create`.
    """
    label: str
    """The name to show."""
    uri: DocumentUri | None = None
    """The local file defining the test."""
    range: Range | None = None
    """Where in that file the test is defined."""
    children: tuple[TestItem, ...] | None = None
    """The tests inside this group."""


class PodlinkCapabilities(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """What the daemon puts under `capabilities.experimental.podlink` in its initialize result."""

    protocol_version: int
    """The protocol version the daemon speaks."""


class ErrorData(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """The `data` of every JSON-RPC error the daemon returns for a podlink request."""

    reason: ErrorReason
    """The reason, one per error code."""
    detail: dict[str, Any] | None = None
    """What was tried or where, as fields: `{file, line, key}` for configInvalid, `{sessionId}` for
    sessionNotFound.
    """


class Position(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """An LSP position in a text document."""

    line: int
    """Zero-based line."""
    character: int
    """Zero-based offset in the line, in UTF-16 code units as LSP counts by default."""


class Range(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """An LSP range in a text document."""

    start: Position
    """The first position in the range."""
    end: Position
    """The position just after the range."""


class Location(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """An LSP location: a range in a document."""

    uri: DocumentUri
    """The document, a local `file:` URI."""
    range: Range
    """The range in that document."""


class StartSessionParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/startSession."""

    folder: DocumentUri
    """The local workspace folder to sync."""
    config_file: str | None = None
    """The podlink config file to use instead of the folder's default one."""


class StopSessionParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/stopSession."""

    session_id: str
    """The session to stop."""


class ListSessionsParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/listSessions: none."""


class FlushSyncParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/flushSync."""

    session_id: str
    """The session whose sync to flush."""
    timeout_ms: float | None = None
    """How long to wait, in milliseconds, before failing with timeout."""


class AddPortParams(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """The params of podlink/addPort."""

    session_id: str
    """The session whose target to forward from."""
    remote_port: int
    """The port in the target."""
    local_port: int | None = None
    """The port on 127.0.0.1; a free one is picked when absent."""


class RemovePortParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/removePort."""

    session_id: str
    """The session holding the forward."""
    local_port: int
    """The local port of the forward to remove."""


class RestartAppParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/restartApp."""

    session_id: str
    """The session whose app to restart."""


class StopAppParams(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """The params of podlink/stopApp."""

    session_id: str
    """The session whose app to stop."""


class StartDebugParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/startDebug."""

    session_id: str
    """The session whose app to debug."""
    port: int | None = None
    """Attach to a process in the target whose debugpy already listens on this port (`python -m
    debugpy --listen 127.0.0.1:PORT ...`) instead of running the app under debugpy; nothing is
    restarted. When absent, `debug.attach.port` of podlink.yaml, if set.
    """
    pid: int | None = None
    """Attach to the running process with this id in the target by injecting debugpy into it
    (debugpy's `--pid`), restarting nothing. That needs gdb in the target and permission to ptrace
    there; when either is missing the error says what to add. When absent, `debug.attach.pid` of
    podlink.yaml, if set.
    """


class StartDebugResult(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The result of podlink/startDebug."""

    configuration: dict[str, Any]
    """A ready VS Code `debugpy` attach configuration: `{"type": "debugpy", "request": "attach",
    "name": ..., "connect": {"host": "127.0.0.1", "port": N}, "pathMappings": [{"localRoot": ...,
    "remoteRoot": ...}], "justMyCode": ...}`.
    """


class DiscoverTestsParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/discoverTests."""

    session_id: str
    """The session whose tests to collect."""


class DiscoverTestsResult(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The result of podlink/discoverTests."""

    tests: tuple[TestItem, ...]
    """The top-level test items."""


class RunTestsParams(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """The params of podlink/runTests."""

    session_id: str
    """The session whose tests to run."""
    ids: tuple[str, ...] | None = None
    """The TestItem ids to run, groups included; every test when absent."""
    run_id: str | None = None
    """The id for this run, so podlink/cancelTests can name it before the result arrives; picked by
    the daemon when absent.
    """


class RunTestsResult(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """The result of podlink/runTests: the totals of the run."""

    run_id: str
    """The id of the run, as in its podlink/testResult notifications."""
    passed: int
    """Tests that passed."""
    failed: int
    """Tests that failed."""
    skipped: int
    """Tests that were skipped."""
    errored: int
    """Tests that could not run to a verdict."""
    xfailed: int | None = None
    """Tests that failed as expected (counted in none of the fields above); absent from daemons
    older than this outcome.
    """
    xpassed: int | None = None
    """Tests that passed although expected to fail (counted in none of the fields above); absent
    from daemons older than this outcome.
    """
    duration_ms: float
    """How long the run took, in milliseconds."""
    problem: str | None = None
    """Why the run went wrong beyond failing tests (no test matched an id, pytest could not start,
    the target went away), in words; absent when it did not.
    """


class DebugTestsParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/debugTests."""

    session_id: str
    """The session whose tests to debug."""
    ids: tuple[str, ...] | None = None
    """The TestItem ids to run, groups included; every test when absent."""
    run_id: str | None = None
    """The id for this run, as in podlink/runTests; picked by the daemon when absent."""


class DebugTestsResult(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The result of podlink/debugTests: pytest waits in the target for a debugger to attach."""

    run_id: str
    """The id of the run, as in its podlink/testResult notifications and its
    podlink/testRunFinished.
    """
    configuration: dict[str, Any]
    """A ready VS Code `debugpy` attach configuration, shaped as the one podlink/startDebug answers,
    for the debug server pytest runs under.
    """


class CancelTestsParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/cancelTests."""

    run_id: str
    """The run to cancel."""


class BuildParams(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """The params of podlink/build."""

    session_id: str
    """The session to build in."""


class BuildResult(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """The result of podlink/build."""

    exit_code: int
    """The build command's exit code."""
    duration_ms: float
    """How long the build took, in milliseconds."""
    diagnostics: int
    """How many diagnostics the build published."""


class ResumeSyncParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/resumeSync."""

    session_id: str
    """The session whose sync to resume."""


class ResetSyncParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/resetSync."""

    session_id: str
    """The session whose sync to reset."""


class ExplainPathParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/explainPath."""

    session_id: str
    """The session whose sync rules to ask."""
    uri: DocumentUri
    """The local path to explain, a `file:` URI; it need not exist."""


class FollowLogsParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/followLogs."""

    session_id: str
    """The session whose container (docker) or pod (kubernetes) log to stream."""
    tail: int | None = None
    """Start with the last this many lines; everything when absent."""
    previous: bool | None = None
    """The pod's container before its last restart (pods only); the stream ends with that log."""
    every_pod: bool | None = None
    """Every pod of the session's Deployment (or selector), each line prefixed with `[pod-name] `
    (pods only).
    """


class FollowLogsResult(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The result of podlink/followLogs."""

    stream_id: str
    """The stream's id, which podlink/containerLog carries and podlink/stopLogs takes."""


class StopLogsParams(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """The params of podlink/stopLogs."""

    stream_id: str
    """The stream to end."""


class ContainerLogParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/containerLog."""

    stream_id: str
    """The stream podlink/followLogs started."""
    session_id: str
    """The session the log belongs to."""
    text: str
    """The next part of the log, as the container wrote it (not split into lines)."""
    ended: bool | None = None
    """True on the stream's last message: the container stopped, the log was read to its end,
    podlink/stopLogs ended it, or it failed (then `error` says why).
    """
    error: str | None = None
    """Why the log could not be read, or stopped being read, with what to do."""


class LogParams(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    """The params of podlink/log."""

    session_id: str
    """The session the output belongs to."""
    source: LogSource
    """The part of the session that produced it."""
    text: str
    """The output, one or more lines."""
    level: LogLevel | None = None
    """How much the message matters; a client shows a message without one as info."""


class TestResultParams(
    msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True
):
    """The params of podlink/testResult."""

    run_id: str
    """The run the test belongs to."""
    id: str
    """The TestItem id of the test."""
    outcome: TestOutcome
    """How the test ended; a client that does not know the value shows the test as skipped."""
    duration_ms: float | None = None
    """How long the test took, in milliseconds."""
    message: str | None = None
    """Why the test failed, errored, was skipped or was expected to fail."""
    location: Location | None = None
    """Where the test failed, or the line that skipped it, in the local file."""
    output: str | None = None
    """What the test printed."""


START_SESSION = "podlink/startSession"
STOP_SESSION = "podlink/stopSession"
LIST_SESSIONS = "podlink/listSessions"
FLUSH_SYNC = "podlink/flushSync"
ADD_PORT = "podlink/addPort"
REMOVE_PORT = "podlink/removePort"
RESTART_APP = "podlink/restartApp"
STOP_APP = "podlink/stopApp"
START_DEBUG = "podlink/startDebug"
DISCOVER_TESTS = "podlink/discoverTests"
RUN_TESTS = "podlink/runTests"
DEBUG_TESTS = "podlink/debugTests"
CANCEL_TESTS = "podlink/cancelTests"
BUILD = "podlink/build"
RESUME_SYNC = "podlink/resumeSync"
RESET_SYNC = "podlink/resetSync"
EXPLAIN_PATH = "podlink/explainPath"
FOLLOW_LOGS = "podlink/followLogs"
STOP_LOGS = "podlink/stopLogs"
SESSION_CHANGED = "podlink/sessionChanged"
LOG = "podlink/log"
CONTAINER_LOG = "podlink/containerLog"
TEST_RESULT = "podlink/testResult"
TEST_RUN_FINISHED = "podlink/testRunFinished"
PUBLISH_DIAGNOSTICS = "textDocument/publishDiagnostics"
PROGRESS = "$/progress"


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    """A request a client sends and the daemon answers."""

    method: str
    params: type[msgspec.Struct]
    result: type | None
    """The type msgspec decodes the result into; None when the result is JSON null."""
    doc: str


@dataclasses.dataclass(frozen=True)
class NotificationSpec:
    """A notification the daemon sends to its clients."""

    method: str
    params: type[msgspec.Struct] | None
    """None for standard LSP notifications, whose params types LSP itself defines."""
    doc: str


REQUESTS: dict[str, RequestSpec] = {
    START_SESSION: RequestSpec(
        method=START_SESSION,
        params=StartSessionParams,
        result=Session,
        doc="Start a session for a workspace folder; returns once the initial sync is done or has "
        "failed.",
    ),
    STOP_SESSION: RequestSpec(
        method=STOP_SESSION,
        params=StopSessionParams,
        result=None,
        doc="Stop the app, port forwards and watchers, leaving nothing running in the target that "
        "podlink started.",
    ),
    LIST_SESSIONS: RequestSpec(
        method=LIST_SESSIONS,
        params=ListSessionsParams,
        result=tuple[Session, ...],
        doc="List the daemon's sessions.",
    ),
    FLUSH_SYNC: RequestSpec(
        method=FLUSH_SYNC,
        params=FlushSyncParams,
        result=SyncStatus,
        doc="Return once every local change made before the request is in the target.",
    ),
    ADD_PORT: RequestSpec(
        method=ADD_PORT,
        params=AddPortParams,
        result=PortForward,
        doc="Forward a port of the target to a local port, bound to 127.0.0.1 only.",
    ),
    REMOVE_PORT: RequestSpec(
        method=REMOVE_PORT,
        params=RemovePortParams,
        result=None,
        doc="Remove a port forward.",
    ),
    RESTART_APP: RequestSpec(
        method=RESTART_APP,
        params=RestartAppParams,
        result=AppProcess,
        doc="Restart the app, or start it when it is not running.",
    ),
    STOP_APP: RequestSpec(
        method=STOP_APP,
        params=StopAppParams,
        result=None,
        doc="Stop the app.",
    ),
    START_DEBUG: RequestSpec(
        method=START_DEBUG,
        params=StartDebugParams,
        result=StartDebugResult,
        doc="Get the app ready for a debugger and return the configuration that attaches VS Code "
        "to it.",
    ),
    DISCOVER_TESTS: RequestSpec(
        method=DISCOVER_TESTS,
        params=DiscoverTestsParams,
        result=DiscoverTestsResult,
        doc="Collect the session's tests.",
    ),
    RUN_TESTS: RequestSpec(
        method=RUN_TESTS,
        params=RunTestsParams,
        result=RunTestsResult,
        doc="Flush the sync, then run tests, reporting each through podlink/testResult.",
    ),
    DEBUG_TESTS: RequestSpec(
        method=DEBUG_TESTS,
        params=DebugTestsParams,
        result=DebugTestsResult,
        doc="Flush the sync, then run tests under debugpy in the target; answers once pytest waits "
        "for a debugger, with the configuration that attaches one. The run goes on once a "
        "debugger is attached: its results arrive through podlink/testResult and its totals "
        "through podlink/testRunFinished; podlink/cancelTests stops it.",
    ),
    CANCEL_TESTS: RequestSpec(
        method=CANCEL_TESTS,
        params=CancelTestsParams,
        result=None,
        doc="Cancel a test run.",
    ),
    BUILD: RequestSpec(
        method=BUILD,
        params=BuildParams,
        result=BuildResult,
        doc="Flush the sync, then run the build, publishing its errors as diagnostics.",
    ),
    RESUME_SYNC: RequestSpec(
        method=RESUME_SYNC,
        params=ResumeSyncParams,
        result=SyncStatus,
        doc="Resume a sync paused by a safety halt.",
    ),
    RESET_SYNC: RequestSpec(
        method=RESET_SYNC,
        params=ResetSyncParams,
        result=SyncStatus,
        doc="Forget the state both sides last agreed on and rescan them, as on a first sync.",
    ),
    EXPLAIN_PATH: RequestSpec(
        method=EXPLAIN_PATH,
        params=ExplainPathParams,
        result=PathExplanation,
        doc="Say whether a local path is synced into the target and, if not, which rule of which "
        "ignore file (or of the exclude list) keeps it out.",
    ),
    FOLLOW_LOGS: RequestSpec(
        method=FOLLOW_LOGS,
        params=FollowLogsParams,
        result=FollowLogsResult,
        doc="Stream the log of the session's container or pod (as `podlink logs -f` prints it) "
        "through podlink/containerLog until the container stops or podlink/stopLogs.",
    ),
    STOP_LOGS: RequestSpec(
        method=STOP_LOGS,
        params=StopLogsParams,
        result=None,
        doc="End a stream podlink/followLogs started; its last podlink/containerLog says ended.",
    ),
}

NOTIFICATIONS: dict[str, NotificationSpec] = {
    SESSION_CHANGED: NotificationSpec(
        method=SESSION_CHANGED,
        params=Session,
        doc="A session's state, sync, ports or app changed; coalesced to at most about ten a "
        "second.",
    ),
    LOG: NotificationSpec(
        method=LOG,
        params=LogParams,
        doc="Output from a session's app, sync, build or tests, or from the daemon about it.",
    ),
    CONTAINER_LOG: NotificationSpec(
        method=CONTAINER_LOG,
        params=ContainerLogParams,
        doc="The next part of a log stream podlink/followLogs started.",
    ),
    TEST_RESULT: NotificationSpec(
        method=TEST_RESULT,
        params=TestResultParams,
        doc="One test of a run has ended.",
    ),
    TEST_RUN_FINISHED: NotificationSpec(
        method=TEST_RUN_FINISHED,
        params=RunTestsResult,
        doc="A run podlink/debugTests started has ended: its totals, as podlink/runTests answers "
        "them.",
    ),
    PUBLISH_DIAGNOSTICS: NotificationSpec(
        method=PUBLISH_DIAGNOSTICS,
        params=None,
        doc="Test failures (source `podlink-test`) at the failing line of the local file and build "
        "errors (source `podlink-build`); cleared when fixed.",
    ),
    PROGRESS: NotificationSpec(
        method=PROGRESS,
        params=None,
        doc="Progress of the initial sync and of long builds, when the client offered a work-done "
        "token.",
    ),
}


class ErrorCode(enum.IntEnum):
    """The JSON-RPC error codes of podlink requests; every error carries an ErrorData."""

    PARSE_ERROR = -32700
    """The message could not be read: its body is not JSON, or its headers have no usable
    `Content-Length`. Answered with `id: null`; the daemon skips to the next `Content-Length` header
    and goes on.
    """
    INVALID_REQUEST = -32600
    """The message is JSON but not a JSON-RPC 2.0 message (an array, no `"jsonrpc": "2.0"`, a bad
    `id` or `method`), or it is longer than the limit of 16 MiB (16777216 bytes; detail gives
    `limit` and `length`); a longer message is skipped unread.
    """
    INVALID_PARAMS = -32602
    """The params do not have the shape the method takes."""
    CONFIG_INVALID = -32001
    """The podlink config is invalid; detail names the file, line and key."""
    TARGET_UNAVAILABLE = -32002
    """The target cannot be reached; detail says what was tried: context, container, pod."""
    SESSION_NOT_FOUND = -32003
    """No session has the given id."""
    TIMEOUT = -32004
    """The operation did not finish in time."""
    CONFLICT = -32005
    """Two-way sync holds unresolved conflicts."""
    NOT_IMPLEMENTED = -32006
    """The method is part of the protocol but this daemon does not implement it yet."""


ERROR_REASONS: dict[ErrorCode, ErrorReason] = {
    ErrorCode.PARSE_ERROR: "parseError",
    ErrorCode.INVALID_REQUEST: "invalidRequest",
    ErrorCode.INVALID_PARAMS: "invalidParams",
    ErrorCode.CONFIG_INVALID: "configInvalid",
    ErrorCode.TARGET_UNAVAILABLE: "targetUnavailable",
    ErrorCode.SESSION_NOT_FOUND: "sessionNotFound",
    ErrorCode.TIMEOUT: "timeout",
    ErrorCode.CONFLICT: "conflict",
    ErrorCode.NOT_IMPLEMENTED: "notImplemented",
}


class RequestBinder(Protocol):
    """Where ``bind`` registers handlers: a server that decodes params, calls the handler
    and encodes its result."""

    def bind_request(
        self, spec: RequestSpec, handler: Callable[[Any], Awaitable[object]]
    ) -> None: ...


class PodlinkHandlers(Protocol):
    """One typed handler per request; ``bind`` registers every one of them."""

    async def start_session(self, params: StartSessionParams) -> Session: ...

    async def stop_session(self, params: StopSessionParams) -> None: ...

    async def list_sessions(self, params: ListSessionsParams) -> tuple[Session, ...]: ...

    async def flush_sync(self, params: FlushSyncParams) -> SyncStatus: ...

    async def add_port(self, params: AddPortParams) -> PortForward: ...

    async def remove_port(self, params: RemovePortParams) -> None: ...

    async def restart_app(self, params: RestartAppParams) -> AppProcess: ...

    async def stop_app(self, params: StopAppParams) -> None: ...

    async def start_debug(self, params: StartDebugParams) -> StartDebugResult: ...

    async def discover_tests(self, params: DiscoverTestsParams) -> DiscoverTestsResult: ...

    async def run_tests(self, params: RunTestsParams) -> RunTestsResult: ...

    async def debug_tests(self, params: DebugTestsParams) -> DebugTestsResult: ...

    async def cancel_tests(self, params: CancelTestsParams) -> None: ...

    async def build(self, params: BuildParams) -> BuildResult: ...

    async def resume_sync(self, params: ResumeSyncParams) -> SyncStatus: ...

    async def reset_sync(self, params: ResetSyncParams) -> SyncStatus: ...

    async def explain_path(self, params: ExplainPathParams) -> PathExplanation: ...

    async def follow_logs(self, params: FollowLogsParams) -> FollowLogsResult: ...

    async def stop_logs(self, params: StopLogsParams) -> None: ...


def bind(server: RequestBinder, handlers: PodlinkHandlers) -> None:
    """Register the handler of every request in REQUESTS with the server."""
    server.bind_request(REQUESTS[START_SESSION], handlers.start_session)
    server.bind_request(REQUESTS[STOP_SESSION], handlers.stop_session)
    server.bind_request(REQUESTS[LIST_SESSIONS], handlers.list_sessions)
    server.bind_request(REQUESTS[FLUSH_SYNC], handlers.flush_sync)
    server.bind_request(REQUESTS[ADD_PORT], handlers.add_port)
    server.bind_request(REQUESTS[REMOVE_PORT], handlers.remove_port)
    server.bind_request(REQUESTS[RESTART_APP], handlers.restart_app)
    server.bind_request(REQUESTS[STOP_APP], handlers.stop_app)
    server.bind_request(REQUESTS[START_DEBUG], handlers.start_debug)
    server.bind_request(REQUESTS[DISCOVER_TESTS], handlers.discover_tests)
    server.bind_request(REQUESTS[RUN_TESTS], handlers.run_tests)
    server.bind_request(REQUESTS[DEBUG_TESTS], handlers.debug_tests)
    server.bind_request(REQUESTS[CANCEL_TESTS], handlers.cancel_tests)
    server.bind_request(REQUESTS[BUILD], handlers.build)
    server.bind_request(REQUESTS[RESUME_SYNC], handlers.resume_sync)
    server.bind_request(REQUESTS[RESET_SYNC], handlers.reset_sync)
    server.bind_request(REQUESTS[EXPLAIN_PATH], handlers.explain_path)
    server.bind_request(REQUESTS[FOLLOW_LOGS], handlers.follow_logs)
    server.bind_request(REQUESTS[STOP_LOGS], handlers.stop_logs)
