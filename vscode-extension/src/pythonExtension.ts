/** The Python extension's active interpreter, when that extension is installed. */
import * as vscode from "vscode";

const PYTHON_EXTENSION_ID = "ms-python.python";
// Activating the Python extension can take a while on a cold start; the daemon must not wait forever.
const ACTIVATION_TIMEOUT_MS = 15_000;

interface PythonExtensionApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { id: string; path: string } | undefined;
  };
}

function isPythonExtensionApi(value: unknown): value is PythonExtensionApi {
  return typeof value === "object" && value !== null;
}

export async function activeInterpreterPath(
  resource: vscode.Uri | undefined,
  log: vscode.LogOutputChannel,
): Promise<string | undefined> {
  const extension = vscode.extensions.getExtension(PYTHON_EXTENSION_ID);
  if (!extension) {
    return undefined;
  }
  try {
    const api: unknown = extension.isActive
      ? extension.exports
      : await Promise.race([
          extension.activate(),
          new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ACTIVATION_TIMEOUT_MS)),
        ]);
    if (!isPythonExtensionApi(api) || !api.environments) {
      return undefined;
    }
    return api.environments.getActiveEnvironmentPath(resource)?.path;
  } catch (error) {
    log.warn(`could not ask the Python extension for its interpreter: ${String(error)}`);
    return undefined;
  }
}
