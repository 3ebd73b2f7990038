/** Order statistics for noisy samples: medians and p90s, never a single run. */

export type Summary = {n: number; median: number; p90: number; min: number; max: number; mean: number};

/** Linear interpolation between closest ranks (the same as numpy's default). */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) {
    return Number.NaN;
  }
  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * q;
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  const low = sorted[lower] ?? Number.NaN;
  const high = sorted[upper] ?? Number.NaN;
  return low + (high - low) * (position - lower);
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

export function summarize(values: readonly number[]): Summary {
  const finite = values.filter(value => Number.isFinite(value));
  return {
    n: finite.length,
    median: median(finite),
    p90: quantile(finite, 0.9),
    min: finite.length === 0 ? Number.NaN : Math.min(...finite),
    max: finite.length === 0 ? Number.NaN : Math.max(...finite),
    mean: finite.length === 0 ? Number.NaN : finite.reduce((sum, value) => sum + value, 0) / finite.length,
  };
}

export function ratio(numerator: number, denominator: number): number {
  return denominator === 0 ? Number.NaN : numerator / denominator;
}

/** Rounds for JSON output so results files stay readable. */
export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) {
    return value;
  }
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

export function roundSummary(summary: Summary, digits = 2): Summary {
  return {
    n: summary.n,
    median: round(summary.median, digits),
    p90: round(summary.p90, digits),
    min: round(summary.min, digits),
    max: round(summary.max, digits),
    mean: round(summary.mean, digits),
  };
}
