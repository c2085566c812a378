/**
 * The one typed way to read podlink's settings. The keys, types, defaults and bounds come from
 * package.json through the generated SETTING_SPECS; nothing here repeats them.
 */
import { SETTING_SPECS, SETTINGS_SECTION } from "./generated/settings";

export { SETTINGS_SECTION };

type Specs = typeof SETTING_SPECS;
export type SettingKey = keyof Specs;

type ValueOf<Spec> = Spec extends { type: "string" }
  ? string
  : Spec extends { type: "boolean" }
    ? boolean
    : Spec extends { type: "integer" | "number" }
      ? number
      : never;

/** Every podlink setting, by its key within the `podlink` section. */
export type PodlinkSettings = { readonly [Key in SettingKey]: ValueOf<Specs[Key]> };

/** Reads one raw value by its key within the section; `undefined` when it is not set. */
export type SettingLookup = (key: SettingKey) => unknown;

export interface SettingProblem {
  key: SettingKey;
  message: string;
}

export interface ReadSettings {
  settings: PodlinkSettings;
  /** Values that were set but unusable, replaced by their defaults. */
  problems: SettingProblem[];
}

interface NumericBounds {
  minimum?: number;
  maximum?: number;
}

function accept(key: SettingKey, raw: unknown): { value: unknown } | { problem: string } {
  const spec = SETTING_SPECS[key];
  switch (spec.type) {
    case "string":
      return typeof raw === "string" ? { value: raw } : { problem: "is not text" };
    case "boolean":
      return typeof raw === "boolean" ? { value: raw } : { problem: "is not true or false" };
    case "integer": {
      if (typeof raw !== "number" || !Number.isInteger(raw)) {
        return { problem: "is not a whole number" };
      }
      const bounds: NumericBounds = spec;
      if (bounds.minimum !== undefined && raw < bounds.minimum) {
        return { problem: `is below the minimum of ${bounds.minimum}` };
      }
      if (bounds.maximum !== undefined && raw > bounds.maximum) {
        return { problem: `is above the maximum of ${bounds.maximum}` };
      }
      return { value: raw };
    }
  }
}

/**
 * Every setting, each checked against its declared type and bounds. An unusable value falls
 * back to the default and is reported rather than thrown: a typo in settings.json must not
 * stop the extension.
 */
export function readSettings(lookup: SettingLookup): ReadSettings {
  const values: Partial<Record<SettingKey, unknown>> = {};
  const problems: SettingProblem[] = [];
  for (const key of Object.keys(SETTING_SPECS) as SettingKey[]) {
    const raw = lookup(key);
    if (raw === undefined || raw === null) {
      values[key] = SETTING_SPECS[key].default;
      continue;
    }
    const verdict = accept(key, raw);
    if ("value" in verdict) {
      values[key] = verdict.value;
    } else {
      values[key] = SETTING_SPECS[key].default;
      problems.push({
        key,
        message: `${SETTINGS_SECTION}.${key} ${verdict.problem} (${JSON.stringify(raw)}); using the default`,
      });
    }
  }
  // Every key was filled above from SETTING_SPECS, each checked against its own type.
  return { settings: values as PodlinkSettings, problems };
}

/** The full key as settings.json spells it, for messages and `affectsConfiguration`. */
export function qualifiedKey(key: SettingKey): string {
  return `${SETTINGS_SECTION}.${key}`;
}
