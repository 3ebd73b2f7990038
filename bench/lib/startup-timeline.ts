/**
 * The timeline of one worker start, from the marks the hive and the worker write with
 * RBEE_STARTUP_TRACE=1 (`[trace] <epoch ms> <subject> <step>`: src/startup-trace.ts) and the
 * bench's own two (request sent, first token), all on the one clock the machine's processes share.
 * The medians of several starts, step by step, say where a cold start's time goes.
 */
import fs from 'node:fs';
import path from 'node:path';
import {median} from './stats.js';

export type TraceMark = {at: number; subject: string; step: string};
export type TimelineStep = {step: string; ms: number};

const traceLine = /^\[trace\] (\d+(?:\.\d+)?) (\S+) (.+)$/;

export function parseTrace(text: string): TraceMark[] {
  const marks: TraceMark[] = [];
  for (const line of text.split('\n')) {
    const match = traceLine.exec(line.trim());
    if (match !== null) {
      marks.push({at: Number(match[1]), subject: match[2]!, step: match[3]!});
    }
  }
  return marks;
}

/** Now on the clock of the trace marks. */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * One start's steps in time order, in ms since `began`: the hive's marks (its stderr) between
 * `began` and `ended`, and the worker's (its log file in the hive's home) for `workerId`.
 */
export function startTimeline(options: {
  hiveStderr: string;
  hiveHome: string;
  workerId: string;
  /** Workers whose own marks count too (a swap: the one stopped to make room). */
  otherWorkerIds?: string[];
  began: number;
  ended: number;
  first: string;
  last: string;
}): TimelineStep[] {
  const within = (mark: TraceMark) => mark.at >= options.began && mark.at <= options.ended + 1;
  // The hive's marks of any worker: a swap's stop of the model it replaces is part of its time.
  const hive = parseTrace(options.hiveStderr)
    .filter(within)
    .map(mark => ({at: mark.at, step: `hive: ${mark.step}${mark.subject === 'hive' || mark.subject === options.workerId ? '' : ' (the other worker)'}`}));
  let workerLog = '';
  try {
    workerLog = fs.readFileSync(path.join(options.hiveHome, 'logs', `${options.workerId}.log`), 'utf8');
  } catch {
    // No log (the worker never started): the hive's marks alone.
  }
  const others = (options.otherWorkerIds ?? []).flatMap(id => {
    try {
      return parseTrace(fs.readFileSync(path.join(options.hiveHome, 'logs', `${id}.log`), 'utf8')).filter(mark => mark.subject === id);
    } catch {
      return [];
    }
  });
  const worker = [...parseTrace(workerLog).filter(mark => mark.subject === options.workerId), ...others]
    .filter(within)
    .map(mark => ({at: mark.at, step: `worker: ${mark.step}${mark.subject === options.workerId ? '' : ' (the other worker)'}`}));
  return [{at: options.began, step: options.first}, ...hive, ...worker, {at: options.ended, step: options.last}]
    .sort((a, b) => a.at - b.at)
    .map(mark => ({step: mark.step, ms: Math.round((mark.at - options.began) * 10) / 10}));
}

/** Each step's median over several starts (a step missing from some counts over those that have it), in time order. */
export function medianTimeline(timelines: TimelineStep[][]): Array<TimelineStep & {seen: number}> {
  const byStep = new Map<string, number[]>();
  for (const timeline of timelines) {
    for (const {step, ms} of timeline) {
      byStep.set(step, [...(byStep.get(step) ?? []), ms]);
    }
  }
  return [...byStep.entries()].map(([step, values]) => ({step, ms: Math.round(median(values) * 10) / 10, seen: values.length})).sort((a, b) => a.ms - b.ms);
}

/** A hive's and its worker's request marks, each named by where it was taken (the worker's from its log in the hive's home). */
export function requestMarks(options: {hiveStderr: string; hiveHome: string; workerId: string}): Array<TraceMark & {source: 'hive' | 'worker'}> {
  let workerLog = '';
  try {
    workerLog = fs.readFileSync(path.join(options.hiveHome, 'logs', `${options.workerId}.log`), 'utf8');
  } catch {
    // No log: the hive's marks alone.
  }
  return [
    ...parseTrace(options.hiveStderr).map(mark => ({...mark, source: 'hive' as const})),
    ...parseTrace(workerLog)
      .filter(mark => mark.subject === options.workerId)
      .map(mark => ({...mark, source: 'worker' as const})),
  ];
}

/**
 * Each request's steps (the first mark of each step, hive's and worker's, between its sending at
 * `sentAt` on the marks' clock and its first token `ms` later), as medians of ms since it was sent,
 * in time order, ending with the client's first token.
 */
export function requestTimeline(
  marks: ReadonlyArray<TraceMark & {source: 'hive' | 'worker'}>,
  requests: ReadonlyArray<{sentAt: number; ms: number}>,
): Array<TimelineStep & {seen: number}> {
  const byStep = new Map<string, number[]>();
  for (const request of requests) {
    const seen = new Set<string>();
    for (const mark of marks) {
      if (mark.at < request.sentAt || mark.at > request.sentAt + request.ms) {
        continue;
      }
      const step = `${mark.source}: ${mark.step}`;
      if (!seen.has(step)) {
        seen.add(step);
        const times = byStep.get(step) ?? [];
        times.push(mark.at - request.sentAt);
        byStep.set(step, times);
      }
    }
  }
  const steps = [...byStep].map(([step, values]) => ({step, ms: Math.round(median(values) * 1000) / 1000, seen: values.length}));
  steps.push({step: 'client: first token', ms: Math.round(median(requests.map(request => request.ms)) * 1000) / 1000, seen: requests.length});
  return steps.sort((a, b) => a.ms - b.ms);
}

/** Rows for a table: each step, when it happened, and the time since the step before. */
export function timelineRows(steps: ReadonlyArray<TimelineStep>): string[][] {
  return steps.map((step, index) => [step.step, step.ms.toFixed(0), index === 0 ? '' : `+${(step.ms - steps[index - 1]!.ms).toFixed(0)}`]);
}
