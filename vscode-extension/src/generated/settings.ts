// Generated from package.json (contributes.configuration) by tools/generate-settings.mjs; do not edit.

/** The configuration section every podlink setting lives in. */
export const SETTINGS_SECTION = "podlink";

/** Each setting's key within the section, with its JSON type, default and bounds. */
export const SETTING_SPECS = {
  /** The Python interpreter that runs the podlink daemon. When empty, the Python extension's active interpreter is used if that extension is installed, else `python3`. */
  "python": {"type":"string","default":""},
  /** Start a session for each workspace folder that contains a `podlink.yaml` as soon as the folder opens. */
  "autoStart": {"type":"boolean","default":true},
  /** A config file to use instead of the folder's `podlink.yaml`, relative to the workspace folder. */
  "configFile": {"type":"string","default":""},
  /** How many times the daemon is restarted after crashing within three minutes before podlink gives up and says so. */
  "daemon.maxRestarts": {"type":"integer","default":3,"minimum":0,"maximum":20},
  /** Make the daemon write debug detail to its log file (`podlink serve --verbose`). */
  "daemon.verbose": {"type":"boolean","default":false},
  /** Attach the debugger again when the app restarts (after a sync, for instance) while a podlink debug session was active. */
  "debug.reattachAfterRestart": {"type":"boolean","default":true},
  /** Collect the tests again when a test file is saved, created or deleted. */
  "testing.rediscoverOnSave": {"type":"boolean","default":true},
} as const;
