import {InvalidArgumentError} from 'commander';
import {formatDuration, parseDuration} from '../config/duration.js';
import type {Range} from '../config/limits.js';

/** Commander argument parsers that name the flag and what they received, as usage errors (exit 2). */
export function integerFlag(name: string, min: number, max: number) {
  return (value: string): number => {
    const number = Number(value);
    if (!/^-?\d+$/.test(value) || number < min || number > max) {
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got "${value}"`);
    }
    return number;
  };
}

/** An integer flag within one of the shared bounds (config/limits.ts). */
export function integerFlagIn(name: string, range: Range) {
  return integerFlag(name, range.min, range.max);
}

/** A duration flag ("30s", "10m", "1h", or milliseconds) within `range`, read into milliseconds. */
export function durationFlagIn(name: string, range: Range) {
  return (value: string): number => {
    const ms = parseDuration(value);
    if (ms === null || ms < range.min || ms > range.max) {
      throw new InvalidArgumentError(
        `${name} must be a duration such as 30s, 10m or 1h, from ${formatDuration(range.min)} to ${formatDuration(range.max)}, got "${value}"`,
      );
    }
    return ms;
  };
}

export function numberFlag(name: string, min: number, max: number) {
  return (value: string): number => {
    const number = Number(value);
    if (value.trim() === '' || !Number.isFinite(number) || number < min || number > max) {
      throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}, got "${value}"`);
    }
    return number;
  };
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

type OptionValue = string | number | boolean | null;

/**
 * A repeatable `key=value` flag into an options object. Numbers, true, false and null are read as
 * such (an adapter's schema expects `threads: 4`, not "4"); anything else stays a string.
 */
export function keyValueFlag(name: string) {
  return (text: string, previous: Record<string, OptionValue> = {}): Record<string, OptionValue> => {
    const match = /^([A-Za-z_][A-Za-z0-9_-]{0,63})=(.*)$/s.exec(text);
    if (match === null) {
      throw new InvalidArgumentError(`${name} takes key=value (a key of letters, digits, "_" or "-"), got "${text}"`);
    }
    const [, key, raw] = match as unknown as [string, string, string];
    let value: OptionValue = raw;
    if (/^(true|false|null)$/.test(raw) || (raw.trim() !== '' && Number.isFinite(Number(raw)) && /^-?[\d.]+(e-?\d+)?$/i.test(raw))) {
      value = JSON.parse(raw) as OptionValue;
    }
    return {...previous, [key]: value};
  };
}
