/**
 * Durations in the config and on the command line: what people write ("30s", "10m", "1h",
 * "1h30m", "500ms") or a number of milliseconds, read into milliseconds.
 */
import {z} from 'zod';
import type {Range} from './limits.js';

const unitMs: Record<string, number> = {ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000};
const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;

/** Milliseconds, or null when `text` is not a duration. */
export function parseDuration(text: string): number | null {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) {
    return Number(trimmed);
  }
  part.lastIndex = 0;
  let total = 0;
  let read = 0;
  for (let match = part.exec(trimmed); match !== null; match = part.exec(trimmed)) {
    total += Number(match[1]) * unitMs[match[2]!]!;
    read = part.lastIndex;
  }
  return read === 0 || read !== trimmed.length ? null : Math.round(total);
}

export function formatDuration(ms: number): string {
  if (ms % 86_400_000 === 0) {
    return `${ms / 86_400_000}d`;
  }
  if (ms % 3_600_000 === 0) {
    return `${ms / 3_600_000}h`;
  }
  if (ms % 60_000 === 0) {
    return `${ms / 60_000}m`;
  }
  return ms % 1_000 === 0 ? `${ms / 1_000}s` : `${ms}ms`;
}

/** A duration within `range` (milliseconds), written either way; the output is milliseconds. */
export function durationIn(range: Range): z.ZodType<number, number | string> {
  const expected = `a duration such as "30s", "10m" or "1h" (or milliseconds), from ${formatDuration(range.min)} to ${formatDuration(range.max)}`;
  return z.union([z.number(), z.string()]).transform((value, context) => {
    const ms = typeof value === 'number' ? value : parseDuration(value);
    if (ms === null || !Number.isInteger(ms) || ms < range.min || ms > range.max) {
      context.addIssue({code: 'custom', message: `expected ${expected}, got ${JSON.stringify(value)}`});
      return z.NEVER;
    }
    return ms;
  });
}
