/**
 * Reads V8 .cpuprofile files (node --cpu-prof) and says where a process spent its CPU during given
 * spans of time: self time per function and per file. The profile's timestamps and
 * process.hrtime.bigint() are both the monotonic clock in µs/ns on Linux, so spans measured by the
 * benchmark in another process cut the samples directly.
 */
import fs from 'node:fs';

type CallFrame = {functionName: string; url: string; lineNumber: number; columnNumber: number};
type ProfileNode = {id: number; callFrame: CallFrame; children?: number[]};
type CpuProfile = {nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[]};

export type Span = {fromNs: bigint; toNs: bigint};

export type FrameCost = {frame: string; self_ms: number; share: number};

export type ProfileSummary = {
  file: string;
  /** Samples inside the spans, and the ms they stand for (sum of their intervals). */
  samples: number;
  sampled_ms: number;
  /** The spans' total length, ms: sampled_ms / span_ms is the process's busy fraction of one core, roughly. */
  span_ms: number;
  /** True when no sample fell in the spans and the whole profile was summarized instead. */
  whole_profile: boolean;
  top_functions: FrameCost[];
  top_files: FrameCost[];
};

/** A file's name for reading: node:internal/… as is, the rest from the last node_modules/ or dist/ on. */
function shortUrl(url: string): string {
  if (url === '') {
    return '(native or V8)';
  }
  const path = url.replace(/^file:\/\//, '');
  const modules = path.lastIndexOf('node_modules/');
  if (modules !== -1) {
    return path.slice(modules + 'node_modules/'.length);
  }
  const dist = path.lastIndexOf('/dist/');
  return dist === -1 ? path : path.slice(dist + 1);
}

function top(costs: Map<string, number>, totalMs: number, count: number): FrameCost[] {
  return [...costs.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([frame, ms]) => ({frame, self_ms: Math.round(ms * 10) / 10, share: totalMs > 0 ? Math.round((ms / totalMs) * 1000) / 1000 : 0}));
}

export function summarizeProfile(file: string, spans: readonly Span[], count = 15): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map(node => [node.id, node]));
  const spansUs = spans.map(span => ({from: Number(span.fromNs / 1000n), to: Number(span.toNs / 1000n)}));
  const inSpans = (time: number) => spansUs.some(span => time >= span.from && time <= span.to);

  const collect = (wholeProfile: boolean) => {
    const byFunction = new Map<string, number>();
    const byFile = new Map<string, number>();
    let samples = 0;
    let sampledMs = 0;
    let time = profile.startTime;
    for (let index = 0; index < profile.samples.length; index++) {
      time += profile.timeDeltas[index] ?? 0;
      // A sample stands for the interval up to the next one.
      const intervalMs = (profile.timeDeltas[index + 1] ?? 0) / 1000;
      if (!wholeProfile && !inSpans(time)) {
        continue;
      }
      const frame = nodes.get(profile.samples[index]!)?.callFrame;
      if (frame === undefined || frame.functionName === '(idle)') {
        continue;
      }
      const where = shortUrl(frame.url);
      const name = `${frame.functionName === '' ? '(anonymous)' : frame.functionName} ${where}${frame.url === '' ? '' : `:${frame.lineNumber + 1}`}`;
      byFunction.set(name, (byFunction.get(name) ?? 0) + intervalMs);
      byFile.set(where, (byFile.get(where) ?? 0) + intervalMs);
      samples++;
      sampledMs += intervalMs;
    }
    return {byFunction, byFile, samples, sampledMs};
  };

  let wholeProfile = false;
  let result = collect(false);
  if (result.samples === 0) {
    wholeProfile = true;
    result = collect(true);
  }
  const spanMs = spans.reduce((sum, span) => sum + Number(span.toNs - span.fromNs) / 1e6, 0);
  return {
    file,
    samples: result.samples,
    sampled_ms: Math.round(result.sampledMs * 10) / 10,
    span_ms: Math.round(spanMs * 10) / 10,
    whole_profile: wholeProfile,
    top_functions: top(result.byFunction, result.sampledMs, count),
    top_files: top(result.byFile, result.sampledMs, count),
  };
}

/** The profiles node --cpu-prof wrote in `dir` for one pid (CPU.<date>.<time>.<pid>.<thread>.<n>.cpuprofile). */
export function profilesOf(dir: string, pid: number): string[] {
  return fs
    .readdirSync(dir)
    .filter(name => name.endsWith('.cpuprofile') && name.split('.')[3] === String(pid))
    .map(name => `${dir}/${name}`);
}
