/** Reads one Prometheus histogram from /metrics text and estimates quantiles from its buckets. */

export type Histogram = {buckets: Array<{le: number; count: number}>; count: number; sum: number};

/** The histogram `name` (no labels), buckets cumulative and sorted by bound; null if absent. */
export function parseHistogram(text: string, name: string): Histogram | null {
  const buckets: Array<{le: number; count: number}> = [];
  let count: number | null = null;
  let sum = 0;
  for (const line of text.split('\n')) {
    const bucket = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`).exec(line);
    if (bucket !== null) {
      buckets.push({le: bucket[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(bucket[1]), count: Number(bucket[2])});
    } else if (line.startsWith(`${name}_count `)) {
      count = Number(line.slice(name.length + 7));
    } else if (line.startsWith(`${name}_sum `)) {
      sum = Number(line.slice(name.length + 5));
    }
  }
  return count === null ? null : {buckets: buckets.sort((a, b) => a.le - b.le), count, sum};
}

/** What was observed between two scrapes of the same histogram. */
export function histogramDelta(after: Histogram, before: Histogram): Histogram {
  return {
    buckets: after.buckets.map(bucket => ({le: bucket.le, count: bucket.count - (before.buckets.find(other => other.le === bucket.le)?.count ?? 0)})),
    count: after.count - before.count,
    sum: after.sum - before.sum,
  };
}

/**
 * Prometheus's histogram_quantile: linear interpolation inside the bucket the quantile falls in,
 * so the answer is only as fine as the buckets; in the +Inf bucket it is the highest finite bound.
 */
export function histogramQuantile(q: number, histogram: Histogram): number {
  const total = histogram.buckets.at(-1)?.count ?? 0;
  if (total === 0) {
    return Number.NaN;
  }
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const bucket of histogram.buckets) {
    if (bucket.count >= rank) {
      if (!Number.isFinite(bucket.le)) {
        return lowerBound;
      }
      const inBucket = bucket.count - lowerCount;
      return inBucket === 0 ? bucket.le : lowerBound + (bucket.le - lowerBound) * ((rank - lowerCount) / inBucket);
    }
    lowerBound = bucket.le;
    lowerCount = bucket.count;
  }
  return lowerBound;
}
