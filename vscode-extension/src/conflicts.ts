/**
 * Where the target's side of a conflict is. Two-way sync keeps the local file and saves the
 * target's version beside it as `<name>.podlink-conflict-<stamp>`; the protocol's SyncIssue
 * names only the path, so the copy is found by that naming. Pure.
 */
import * as path from "node:path";

export const CONFLICT_MARKER = ".podlink-conflict-";

/** The newest conflict copy of `relativePath` among the names in its folder, if any. */
export function conflictCopyFor(relativePath: string, namesInFolder: readonly string[]): string | undefined {
  const base = path.posix.basename(relativePath);
  const copies = namesInFolder.filter((name) => name.startsWith(base + CONFLICT_MARKER)).sort();
  const newest = copies.at(-1);
  if (newest === undefined) return undefined;
  const folder = path.posix.dirname(relativePath);
  return folder === "." ? newest : `${folder}/${newest}`;
}
