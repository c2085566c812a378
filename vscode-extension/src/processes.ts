/** Child processes whose output belongs in the log: probes and installation steps. */
import { execFile, spawn } from "node:child_process";
import type * as vscode from "vscode";

export interface ProcessOutcome {
  spawnError?: string;
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

export function runCaptured(
  command: string,
  args: readonly string[],
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<ProcessOutcome> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { cwd: options.cwd, timeout: options.timeoutMs ?? 60_000, maxBuffer: 4 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && typeof error.code === "string") {
          // ENOENT, EACCES: the program itself could not start.
          resolve({ spawnError: `${error.code}: ${error.message}`, exitCode: null, stdout, stderr });
          return;
        }
        const exitCode = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolve({ exitCode, stdout, stderr });
      },
    );
  });
}

/** Runs a command with its output streamed into the log; rejects with its last lines on failure. */
export function runLogged(
  command: string,
  args: readonly string[],
  log: vscode.LogOutputChannel,
): Promise<void> {
  return new Promise((resolve, reject) => {
    log.info(`$ ${[command, ...args].join(" ")}`);
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    const tail: string[] = [];
    const take = (chunk: Buffer, level: "info" | "warn"): void => {
      for (const line of chunk.toString("utf8").split(/\r?\n/)) {
        if (!line) continue;
        log[level](line);
        tail.push(line);
        if (tail.length > 8) tail.shift();
      }
    };
    child.stdout.on("data", (chunk: Buffer) => take(chunk, "info"));
    child.stderr.on("data", (chunk: Buffer) => take(chunk, "warn"));
    child.on("error", (error) => reject(new Error(`${command} could not start: ${error.message}`)));
    child.on("close", (code) => {
      if (code === 0) {
        resolve();
      } else {
        reject(new Error(`${command} exited with code ${String(code)}: ${tail.slice(-3).join(" / ")}`));
      }
    });
  });
}
