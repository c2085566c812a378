// Generated from protocol/schema.json by protocol/generate.py; do not edit.

/**
 * The podlink protocol: the messages between the daemon and its clients, as types.
 *
 * Interfaces use the protocol's own camelCase names. `Methods` holds every method name,
 * `RequestMap` and `NotificationMap` tie each podlink method to its types, and
 * `ErrorCodes` gives the JSON-RPC error code of each error reason. The reference is
 * protocol/README.md; the source is protocol/schema.json.
 */

/** The version clients find under capabilities.experimental.podlink.protocolVersion. */
export const PROTOCOL_VERSION = 1;

/** A URI as LSP writes it; for paths on this machine, a `file:` URI. */
export type DocumentUri = string;

/**
 * Where a session is in its life; degraded means running with a part (sync, a port, the app)
 * failing.
 */
export type SessionState = "starting" | "syncing" | "ready" | "degraded" | "stopped";

/** What kind of target a session syncs into. */
export type TargetKind = "local" | "docker" | "kubernetes";

/** What the sync is doing; paused means halted for safety until podlink/resumeSync. */
export type SyncState = "idle" | "scanning" | "syncing" | "conflict" | "error" | "paused";

/** Whether a port forward is carrying connections. */
export type PortForwardState = "active" | "reconnecting" | "error";

/**
 * Whether the app process is up; stopped means stopped on request, exited means it ended by itself.
 */
export type AppState = "running" | "exited" | "restarting" | "stopped";

/**
 * How one test ended, as pytest's own summary counts it: errored means it could not run to a
 * verdict (a failing fixture, a file that cannot be collected); xfailed means it failed as an xfail
 * mark (or `pytest.xfail()`) expected, xpassed that it passed although a non-strict xfail mark
 * expected it to fail (a strict one that passes is failed). A file skipped as a whole at collection
 * (`pytest.importorskip`, `pytest.skip(allow_module_level=True)`) is one skipped result under the
 * file's id. More outcomes may be added without a version bump: a client should show one it does
 * not know as it shows skipped (ended, neither passed nor failed), with its message.
 */
export type TestOutcome = "passed" | "failed" | "skipped" | "errored" | "xfailed" | "xpassed";

/** Which part of a session produced a log line. */
export type LogSource = "app" | "sync" | "build" | "test" | "daemon";

/** How much a log message matters: the daemon decides, so clients need not guess from the text. */
export type LogLevel = "debug" | "info" | "warning" | "error";

/**
 * The `source` of the diagnostics podlink publishes: test failures, build errors and sync conflicts
 * (on the conflicting file, while its conflict copy exists).
 */
export type DiagnosticSource = "podlink-test" | "podlink-build" | "podlink-sync";

/** The reason in the data of a podlink error; one per error code. */
export type ErrorReason =
  | "parseError"
  | "invalidRequest"
  | "invalidParams"
  | "configInvalid"
  | "targetUnavailable"
  | "sessionNotFound"
  | "timeout"
  | "conflict"
  | "notImplemented";

/** A workspace folder kept in sync with a target, with its port forwards and app. */
export interface Session {
  /** The session's id, which other requests take as sessionId. */
  id: string;
  /** The local workspace folder. */
  folder: DocumentUri;
  /** Where the session is in its life. */
  state: SessionState;
  /** The target the folder is synced into. */
  target: TargetInfo;
  /** The state of the sync. */
  sync: SyncStatus;
  /** The port forwards. */
  ports: PortForward[];
  /** The app process, when the session runs one. */
  app?: AppProcess;
  /** Why the session is degraded or stopped, when it is. */
  error?: string;
}

/** The target a session syncs into. */
export interface TargetInfo {
  /** The kind of target. */
  kind: TargetKind;
  /** The target's name, for showing to the user. */
  name: string;
  /** Facts that depend on the kind of target, such as a context, namespace or image. */
  detail?: Record<string, unknown>;
}

/** The state of a session's sync. */
export interface SyncStatus {
  /** What the sync is doing. */
  state: SyncState;
  /** Changes seen but not yet applied. */
  pending: number;
  /** Files copied since the session started. */
  filesSynced: number;
  /** Bytes copied since the session started. */
  bytesSynced: number;
  /** Milliseconds from the last change being seen to it being applied. */
  lastLatencyMs?: number;
  /** Paths changed on both sides that the sync will not resolve by itself. */
  conflicts: SyncIssue[];
  /** Paths that could not be synced. */
  problems: SyncIssue[];
  /**
   * What the ignore rules keep out of the target, as of the last scan of the whole workspace;
   * absent before the first one.
   */
  ignored?: IgnoredPaths;
}

/**
 * What the user's ignore rules (`.gitignore` and `.podlinkignore` files, `sync[].exclude`) keep out
 * of the target. podlink's own exclusions (`.git/`, `.podlink/`) are not counted;
 * podlink/explainPath says why any one path is left out.
 */
export interface IgnoredPaths {
  /** Files left out. */
  files: number;
  /** Folders left out whole; what they hold is not looked into or counted. */
  folders: number;
  /** The first few of those paths, relative to the workspace folder; folders end with `/`. */
  examples: string[];
}

/** One rule of an ignore file or of a sync entry's exclude list. */
export interface IgnoreRule {
  /**
   * Where the rule is written: an ignore file's path relative to the workspace folder,
   * `podlink.yaml` (or the config file in use) for `sync[].exclude`, or `built-in` for what podlink
   * never syncs.
   */
  source: string;
  /** The 1-based line in that ignore file, or the 1-based position in the exclude list. */
  line?: number;
  /** The rule as written. */
  pattern: string;
}

/** Whether a local path is synced into the target and, if not, which rule keeps it out. */
export interface PathExplanation {
  /** The path asked about. */
  uri: DocumentUri;
  /** Whether the sync carries it into the target (when it exists). */
  synced: boolean;
  /** Where it is, or would be, in the target, when a sync entry holds it. */
  remotePath?: string;
  /** The rule that decided: the one that excludes it, or a `!` rule that brought it back. */
  rule?: IgnoreRule;
  /**
   * When a folder above the path is what the rule excludes: that folder, relative to the workspace
   * folder (gitignore brings nothing below an excluded folder back).
   */
  excludedFolder?: string;
  /** The answer in one sentence, for showing to the user. */
  message: string;
}

/** A path the sync has something to say about. */
export interface SyncIssue {
  /** The path, relative to the sync root. */
  path: string;
  /** What is wrong, for showing to the user. */
  message: string;
  /**
   * For a conflict: where the target's version was saved in the workspace (relative to the sync
   * root), to compare with the local file.
   */
  copyPath?: string;
  /**
   * The sync root the paths are relative to: the sync entry's local folder, relative to the
   * workspace folder (`.` for the folder itself) or absolute when it lies outside it.
   */
  entry?: string;
}

/** A forward from a local port to a port in the target. */
export interface PortForward {
  /** The port on 127.0.0.1. */
  localPort: number;
  /** The port in the target. */
  remotePort: number;
  /** Whether the forward is carrying connections. */
  state: PortForwardState;
  /** Connections open through the forward now. */
  connections: number;
  /** Why the forward is reconnecting or failed, when it is. */
  error?: string;
}

/** The app a session runs in its target. */
export interface AppProcess {
  /** Whether the app is up. */
  state: AppState;
  /** The command line the app runs, one argument per item. */
  command: string[];
  /** The exit code of the last run, once it has ended. */
  exitCode?: number;
}

/** A test or a group of tests, as a tree. */
export interface TestItem {
  /**
   * The runner's own id with file paths relative to the workspace folder; for pytest, the node id
   * such as `tests/test_api.py::test_create`.
   */
  id: string;
  /** The name to show. */
  label: string;
  /** The local file defining the test. */
  uri?: DocumentUri;
  /** Where in that file the test is defined. */
  range?: Range;
  /** The tests inside this group. */
  children?: TestItem[];
}

/** What the daemon puts under `capabilities.experimental.podlink` in its initialize result. */
export interface PodlinkCapabilities {
  /** The protocol version the daemon speaks. */
  protocolVersion: number;
}

/** The `data` of every JSON-RPC error the daemon returns for a podlink request. */
export interface ErrorData {
  /** The reason, one per error code. */
  reason: ErrorReason;
  /**
   * What was tried or where, as fields: `{file, line, key}` for configInvalid, `{sessionId}` for
   * sessionNotFound.
   */
  detail?: Record<string, unknown>;
}

/** An LSP position in a text document. */
export interface Position {
  /** Zero-based line. */
  line: number;
  /** Zero-based offset in the line, in UTF-16 code units as LSP counts by default. */
  character: number;
}

/** An LSP range in a text document. */
export interface Range {
  /** The first position in the range. */
  start: Position;
  /** The position just after the range. */
  end: Position;
}

/** An LSP location: a range in a document. */
export interface Location {
  /** The document, a local `file:` URI. */
  uri: DocumentUri;
  /** The range in that document. */
  range: Range;
}

/** The params of podlink/startSession. */
export interface StartSessionParams {
  /** The local workspace folder to sync. */
  folder: DocumentUri;
  /** The podlink config file to use instead of the folder's default one. */
  configFile?: string;
}

/** The params of podlink/stopSession. */
export interface StopSessionParams {
  /** The session to stop. */
  sessionId: string;
}

/** The params of podlink/listSessions: none. */
export type ListSessionsParams = Record<string, never>;

/** The params of podlink/flushSync. */
export interface FlushSyncParams {
  /** The session whose sync to flush. */
  sessionId: string;
  /** How long to wait, in milliseconds, before failing with timeout. */
  timeoutMs?: number;
}

/** The params of podlink/addPort. */
export interface AddPortParams {
  /** The session whose target to forward from. */
  sessionId: string;
  /** The port in the target. */
  remotePort: number;
  /** The port on 127.0.0.1; a free one is picked when absent. */
  localPort?: number;
}

/** The params of podlink/removePort. */
export interface RemovePortParams {
  /** The session holding the forward. */
  sessionId: string;
  /** The local port of the forward to remove. */
  localPort: number;
}

/** The params of podlink/restartApp. */
export interface RestartAppParams {
  /** The session whose app to restart. */
  sessionId: string;
}

/** The params of podlink/stopApp. */
export interface StopAppParams {
  /** The session whose app to stop. */
  sessionId: string;
}

/** The params of podlink/startDebug. */
export interface StartDebugParams {
  /** The session whose app to debug. */
  sessionId: string;
  /**
   * Attach to a process in the target whose debugpy already listens on this port (`python -m
   * debugpy --listen 127.0.0.1:PORT ...`) instead of running the app under debugpy; nothing is
   * restarted. When absent, `debug.attach.port` of podlink.yaml, if set.
   */
  port?: number;
  /**
   * Attach to the running process with this id in the target by injecting debugpy into it
   * (debugpy's `--pid`), restarting nothing. That needs gdb in the target and permission to ptrace
   * there; when either is missing the error says what to add. When absent, `debug.attach.pid` of
   * podlink.yaml, if set.
   */
  pid?: number;
}

/** The result of podlink/startDebug. */
export interface StartDebugResult {
  /**
   * A ready VS Code `debugpy` attach configuration: `{"type": "debugpy", "request": "attach",
   * "name": ..., "connect": {"host": "127.0.0.1", "port": N}, "pathMappings": [{"localRoot": ...,
   * "remoteRoot": ...}], "justMyCode": ...}`.
   */
  configuration: Record<string, unknown>;
}

/** The params of podlink/discoverTests. */
export interface DiscoverTestsParams {
  /** The session whose tests to collect. */
  sessionId: string;
}

/** The result of podlink/discoverTests. */
export interface DiscoverTestsResult {
  /** The top-level test items. */
  tests: TestItem[];
}

/** The params of podlink/runTests. */
export interface RunTestsParams {
  /** The session whose tests to run. */
  sessionId: string;
  /** The TestItem ids to run, groups included; every test when absent. */
  ids?: string[];
  /**
   * The id for this run, so podlink/cancelTests can name it before the result arrives; picked by
   * the daemon when absent.
   */
  runId?: string;
}

/** The result of podlink/runTests: the totals of the run. */
export interface RunTestsResult {
  /** The id of the run, as in its podlink/testResult notifications. */
  runId: string;
  /** Tests that passed. */
  passed: number;
  /** Tests that failed. */
  failed: number;
  /** Tests that were skipped. */
  skipped: number;
  /** Tests that could not run to a verdict. */
  errored: number;
  /**
   * Tests that failed as expected (counted in none of the fields above); absent from daemons older
   * than this outcome.
   */
  xfailed?: number;
  /**
   * Tests that passed although expected to fail (counted in none of the fields above); absent from
   * daemons older than this outcome.
   */
  xpassed?: number;
  /** How long the run took, in milliseconds. */
  durationMs: number;
  /**
   * Why the run went wrong beyond failing tests (no test matched an id, pytest could not start, the
   * target went away), in words; absent when it did not.
   */
  problem?: string;
}

/** The params of podlink/debugTests. */
export interface DebugTestsParams {
  /** The session whose tests to debug. */
  sessionId: string;
  /** The TestItem ids to run, groups included; every test when absent. */
  ids?: string[];
  /** The id for this run, as in podlink/runTests; picked by the daemon when absent. */
  runId?: string;
}

/** The result of podlink/debugTests: pytest waits in the target for a debugger to attach. */
export interface DebugTestsResult {
  /**
   * The id of the run, as in its podlink/testResult notifications and its podlink/testRunFinished.
   */
  runId: string;
  /**
   * A ready VS Code `debugpy` attach configuration, shaped as the one podlink/startDebug answers,
   * for the debug server pytest runs under.
   */
  configuration: Record<string, unknown>;
}

/** The params of podlink/cancelTests. */
export interface CancelTestsParams {
  /** The run to cancel. */
  runId: string;
}

/** The params of podlink/build. */
export interface BuildParams {
  /** The session to build in. */
  sessionId: string;
}

/** The result of podlink/build. */
export interface BuildResult {
  /** The build command's exit code. */
  exitCode: number;
  /** How long the build took, in milliseconds. */
  durationMs: number;
  /** How many diagnostics the build published. */
  diagnostics: number;
}

/** The params of podlink/resumeSync. */
export interface ResumeSyncParams {
  /** The session whose sync to resume. */
  sessionId: string;
}

/** The params of podlink/resetSync. */
export interface ResetSyncParams {
  /** The session whose sync to reset. */
  sessionId: string;
}

/** The params of podlink/explainPath. */
export interface ExplainPathParams {
  /** The session whose sync rules to ask. */
  sessionId: string;
  /** The local path to explain, a `file:` URI; it need not exist. */
  uri: DocumentUri;
}

/** The params of podlink/followLogs. */
export interface FollowLogsParams {
  /** The session whose container (docker) or pod (kubernetes) log to stream. */
  sessionId: string;
  /** Start with the last this many lines; everything when absent. */
  tail?: number;
  /** The pod's container before its last restart (pods only); the stream ends with that log. */
  previous?: boolean;
  /**
   * Every pod of the session's Deployment (or selector), each line prefixed with `[pod-name] `
   * (pods only).
   */
  everyPod?: boolean;
}

/** The result of podlink/followLogs. */
export interface FollowLogsResult {
  /** The stream's id, which podlink/containerLog carries and podlink/stopLogs takes. */
  streamId: string;
}

/** The params of podlink/stopLogs. */
export interface StopLogsParams {
  /** The stream to end. */
  streamId: string;
}

/** The params of podlink/containerLog. */
export interface ContainerLogParams {
  /** The stream podlink/followLogs started. */
  streamId: string;
  /** The session the log belongs to. */
  sessionId: string;
  /** The next part of the log, as the container wrote it (not split into lines). */
  text: string;
  /**
   * True on the stream's last message: the container stopped, the log was read to its end,
   * podlink/stopLogs ended it, or it failed (then `error` says why).
   */
  ended?: boolean;
  /** Why the log could not be read, or stopped being read, with what to do. */
  error?: string;
}

/** The params of podlink/log. */
export interface LogParams {
  /** The session the output belongs to. */
  sessionId: string;
  /** The part of the session that produced it. */
  source: LogSource;
  /** The output, one or more lines. */
  text: string;
  /** How much the message matters; a client shows a message without one as info. */
  level?: LogLevel;
}

/** The params of podlink/testResult. */
export interface TestResultParams {
  /** The run the test belongs to. */
  runId: string;
  /** The TestItem id of the test. */
  id: string;
  /** How the test ended; a client that does not know the value shows the test as skipped. */
  outcome: TestOutcome;
  /** How long the test took, in milliseconds. */
  durationMs?: number;
  /** Why the test failed, errored, was skipped or was expected to fail. */
  message?: string;
  /** Where the test failed, or the line that skipped it, in the local file. */
  location?: Location;
  /** What the test printed. */
  output?: string;
}

/** Every method name, keyed by its last segment. */
export const Methods = {
  startSession: "podlink/startSession",
  stopSession: "podlink/stopSession",
  listSessions: "podlink/listSessions",
  flushSync: "podlink/flushSync",
  addPort: "podlink/addPort",
  removePort: "podlink/removePort",
  restartApp: "podlink/restartApp",
  stopApp: "podlink/stopApp",
  startDebug: "podlink/startDebug",
  discoverTests: "podlink/discoverTests",
  runTests: "podlink/runTests",
  debugTests: "podlink/debugTests",
  cancelTests: "podlink/cancelTests",
  build: "podlink/build",
  resumeSync: "podlink/resumeSync",
  resetSync: "podlink/resetSync",
  explainPath: "podlink/explainPath",
  followLogs: "podlink/followLogs",
  stopLogs: "podlink/stopLogs",
  sessionChanged: "podlink/sessionChanged",
  log: "podlink/log",
  containerLog: "podlink/containerLog",
  testResult: "podlink/testResult",
  testRunFinished: "podlink/testRunFinished",
  publishDiagnostics: "textDocument/publishDiagnostics",
  progress: "$/progress",
} as const;

/** The params and result type of each request. */
export interface RequestMap {
  /**
   * Start a session for a workspace folder; returns once the initial sync is done or has failed.
   */
  "podlink/startSession": { params: StartSessionParams; result: Session };
  /**
   * Stop the app, port forwards and watchers, leaving nothing running in the target that podlink
   * started.
   */
  "podlink/stopSession": { params: StopSessionParams; result: null };
  /** List the daemon's sessions. */
  "podlink/listSessions": { params: ListSessionsParams; result: Session[] };
  /** Return once every local change made before the request is in the target. */
  "podlink/flushSync": { params: FlushSyncParams; result: SyncStatus };
  /** Forward a port of the target to a local port, bound to 127.0.0.1 only. */
  "podlink/addPort": { params: AddPortParams; result: PortForward };
  /** Remove a port forward. */
  "podlink/removePort": { params: RemovePortParams; result: null };
  /** Restart the app, or start it when it is not running. */
  "podlink/restartApp": { params: RestartAppParams; result: AppProcess };
  /** Stop the app. */
  "podlink/stopApp": { params: StopAppParams; result: null };
  /** Get the app ready for a debugger and return the configuration that attaches VS Code to it. */
  "podlink/startDebug": { params: StartDebugParams; result: StartDebugResult };
  /** Collect the session's tests. */
  "podlink/discoverTests": { params: DiscoverTestsParams; result: DiscoverTestsResult };
  /** Flush the sync, then run tests, reporting each through podlink/testResult. */
  "podlink/runTests": { params: RunTestsParams; result: RunTestsResult };
  /**
   * Flush the sync, then run tests under debugpy in the target; answers once pytest waits for a
   * debugger, with the configuration that attaches one. The run goes on once a debugger is
   * attached: its results arrive through podlink/testResult and its totals through
   * podlink/testRunFinished; podlink/cancelTests stops it.
   */
  "podlink/debugTests": { params: DebugTestsParams; result: DebugTestsResult };
  /** Cancel a test run. */
  "podlink/cancelTests": { params: CancelTestsParams; result: null };
  /** Flush the sync, then run the build, publishing its errors as diagnostics. */
  "podlink/build": { params: BuildParams; result: BuildResult };
  /** Resume a sync paused by a safety halt. */
  "podlink/resumeSync": { params: ResumeSyncParams; result: SyncStatus };
  /** Forget the state both sides last agreed on and rescan them, as on a first sync. */
  "podlink/resetSync": { params: ResetSyncParams; result: SyncStatus };
  /**
   * Say whether a local path is synced into the target and, if not, which rule of which ignore file
   * (or of the exclude list) keeps it out.
   */
  "podlink/explainPath": { params: ExplainPathParams; result: PathExplanation };
  /**
   * Stream the log of the session's container or pod (as `podlink logs -f` prints it) through
   * podlink/containerLog until the container stops or podlink/stopLogs.
   */
  "podlink/followLogs": { params: FollowLogsParams; result: FollowLogsResult };
  /** End a stream podlink/followLogs started; its last podlink/containerLog says ended. */
  "podlink/stopLogs": { params: StopLogsParams; result: null };
}

/** The params type of each podlink notification; LSP defines the standard ones. */
export interface NotificationMap {
  /** A session's state, sync, ports or app changed; coalesced to at most about ten a second. */
  "podlink/sessionChanged": Session;
  /** Output from a session's app, sync, build or tests, or from the daemon about it. */
  "podlink/log": LogParams;
  /** The next part of a log stream podlink/followLogs started. */
  "podlink/containerLog": ContainerLogParams;
  /** One test of a run has ended. */
  "podlink/testResult": TestResultParams;
  /** A run podlink/debugTests started has ended: its totals, as podlink/runTests answers them. */
  "podlink/testRunFinished": RunTestsResult;
}

/** The JSON-RPC error code of each error reason; every error carries an ErrorData. */
export const ErrorCodes = {
  /**
   * The message could not be read: its body is not JSON, or its headers have no usable
   * `Content-Length`. Answered with `id: null`; the daemon skips to the next `Content-Length`
   * header and goes on.
   */
  parseError: -32700,
  /**
   * The message is JSON but not a JSON-RPC 2.0 message (an array, no `"jsonrpc": "2.0"`, a bad `id`
   * or `method`), or it is longer than the limit of 16 MiB (16777216 bytes; detail gives `limit`
   * and `length`); a longer message is skipped unread.
   */
  invalidRequest: -32600,
  /** The params do not have the shape the method takes. */
  invalidParams: -32602,
  /** The podlink config is invalid; detail names the file, line and key. */
  configInvalid: -32001,
  /** The target cannot be reached; detail says what was tried: context, container, pod. */
  targetUnavailable: -32002,
  /** No session has the given id. */
  sessionNotFound: -32003,
  /** The operation did not finish in time. */
  timeout: -32004,
  /** Two-way sync holds unresolved conflicts. */
  conflict: -32005,
  /** The method is part of the protocol but this daemon does not implement it yet. */
  notImplemented: -32006,
} as const;
