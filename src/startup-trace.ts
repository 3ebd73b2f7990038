/**
 * Timeline marks (RBEE_STARTUP_TRACE=1): one `[trace] <epoch ms> <subject> <step>` line on stderr
 * per step of a worker's start, and of each inference request on its way through the hive and the
 * worker to the first token, in the hive and in the worker (whose stderr is its log).
 * Epoch ms to the µs, one clock for every process of the machine, so a bench can put the
 * hive's, the worker's and its own marks on one timeline and show where a cold start's time goes.
 */
import {envFlag} from './config/env.js';

const tracing = envFlag('RBEE_STARTUP_TRACE');

/** Now, on the clock every process of this machine shares (ms since the epoch, fractional). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

export function traceStartup(subject: string, step: string): void {
  if (tracing) {
    process.stderr.write(`[trace] ${epochMs().toFixed(3)} ${subject} ${step}\n`);
  }
}
