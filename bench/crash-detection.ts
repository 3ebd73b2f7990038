/**
 * (d) Failure detection: how long a hive takes to stop calling a dead or hung worker ready.
 *
 *   crash: a real worker (threads 1, parallel 1, context 512, heartbeat 5000 ms, restart never) is
 *          SIGKILLed by pid; the time is from the kill to the first GET /v1/workers/:id (polled
 *          every 2 ms) whose state is neither ready nor busy. The hive learns of an exit from its
 *          child's exit event, so this is the supervisor's reaction, not a heartbeat timeout.
 *   hang:  the same worker with a 500 ms heartbeat is SIGSTOPped right after a heartbeat; the
 *          time is from SIGSTOP to the same change of state. The hive only notices missing
 *          heartbeats (3 intervals, ≈ 1500 ms) on its watchdog tick, whose period follows the
 *          hive's own heartbeat interval (half of it, 50..1000 ms), not the worker's: so the hang
 *          part runs on a default hive (5000 ms: 1000 ms ticks) and on a hive started with
 *          --heartbeat-interval 500 (250 ms ticks).
 * Each round uses a fresh worker; afterwards any stopped process gets SIGCONT and its group SIGKILL.
 */
import fs from 'node:fs';
import {startHiveProcess, type HiveProcess} from './lib/hive-process.js';
import {waitUntilReady} from './lib/hive-workers.js';
import {pollUntil, sleep} from './lib/http.js';
import {roundSummary, summarize, type Summary} from './lib/stats.js';

export type CrashOptions = {modelPath: string; runs: number; log: (message: string) => void};

export type DetectionSample = {
  run: number;
  worker_id: string;
  /** Signal sent → the hive's answer saying the worker is no longer ready, ms. */
  detect_ms: number;
  state: string;
  reason: string | null;
  /**
   * Crash only: signal → the process gone from /proc, i.e. reaped by the hive's waitpid, polled every 1 ms. The
   * kernel signals the parent only once every thread has exited and the model-sized address space is torn down.
   */
  reaped_ms?: number;
  /** Hang only: the worker's last heartbeat (as the hive recorded it) → SIGSTOP, ms. */
  since_heartbeat_ms?: number;
  /** The worker's process group was gone within 5 s of the detection. */
  group_gone: boolean;
};

export type HangResult = {
  hive_heartbeat_interval_ms: number;
  watchdog_period_ms: number;
  detect_ms: Summary;
  /** detect_ms + since_heartbeat_ms: last heartbeat → detection, to compare with 3 × 500 ms. */
  from_last_heartbeat_ms: Summary;
  samples: DetectionSample[];
};

export type CrashResult = {
  config: {
    runs: number;
    threads: 1;
    parallel: 1;
    context_size: 512;
    crash_heartbeat_interval_ms: number;
    hang_heartbeat_interval_ms: number;
    poll_interval_ms: number;
  };
  crash: {hive_heartbeat_interval_ms: number; detect_ms: Summary; reaped_ms: Summary; samples: DetectionSample[]};
  hang: HangResult[];
};

const pollIntervalMs = 2;
const crashHeartbeatMs = 5_000;
const hangHeartbeatMs = 500;

type Worker = {id: string; pid: number; lastHeartbeatAt: string | null};

function watchdogPeriod(hiveHeartbeatMs: number): number {
  // Mirrors the Supervisor constructor's setInterval period.
  return Math.max(50, Math.min(1_000, Math.floor(hiveHeartbeatMs / 2)));
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // gone
  }
}

async function spawnReady(hive: HiveProcess, modelPath: string, heartbeatIntervalMs: number): Promise<Worker> {
  const created = await hive.client.spawnWorker(
    {
      model: modelPath,
      threads: 1,
      parallel: 1,
      context_size: 512,
      heartbeat_interval_ms: heartbeatIntervalMs,
      restart: 'never',
    },
    {timeoutMs: 60_000},
  );
  const info = await waitUntilReady(hive, created.worker_id, {timeoutMs: 120_000, intervalMs: 20});
  if (info.pid === null) {
    throw new Error(`worker ${info.worker_id} is ready without a pid`);
  }
  return {id: info.worker_id, pid: info.pid, lastHeartbeatAt: info.last_heartbeat_at};
}

/** Polls every 2 ms until the hive no longer calls the worker ready; returns when the answer arrived. */
async function untilNotServing(hive: HiveProcess, id: string): Promise<{at: number; state: string; reason: string | null}> {
  return pollUntil(
    `the hive to notice worker ${id}`,
    async () => {
      const info = await hive.client.getWorker(id);
      return info.state === 'ready' || info.state === 'busy' ? undefined : {at: performance.now(), state: info.state, reason: info.reason};
    },
    30_000,
    pollIntervalMs,
  );
}

async function groupGoneSoon(pid: number): Promise<boolean> {
  const deadline = performance.now() + 5_000;
  while (groupAlive(pid) && performance.now() < deadline) {
    await sleep(10);
  }
  return !groupAlive(pid);
}

/**
 * When the hive reaped the process: its pid leaves /proc. (A zombie leader shows up earlier, while
 * its other threads still tear the address space down; the parent hears nothing until they are done.)
 */
async function processReaped(pid: number): Promise<number> {
  const deadline = performance.now() + 30_000;
  while (fs.existsSync(`/proc/${pid}`) && performance.now() < deadline) {
    await sleep(1);
  }
  return performance.now();
}

async function crashOnce(hive: HiveProcess, options: CrashOptions, run: number): Promise<DetectionSample> {
  const worker = await spawnReady(hive, options.modelPath, crashHeartbeatMs);
  try {
    const killedAt = performance.now();
    process.kill(worker.pid, 'SIGKILL');
    const [seen, reapedAt] = await Promise.all([untilNotServing(hive, worker.id), processReaped(worker.pid)]);
    return {
      run,
      worker_id: worker.id,
      detect_ms: seen.at - killedAt,
      reaped_ms: reapedAt - killedAt,
      state: seen.state,
      reason: seen.reason,
      group_gone: await groupGoneSoon(worker.pid),
    };
  } finally {
    signalGroup(worker.pid, 'SIGKILL');
  }
}

async function hangOnce(hive: HiveProcess, options: CrashOptions, run: number): Promise<DetectionSample> {
  const worker = await spawnReady(hive, options.modelPath, hangHeartbeatMs);
  try {
    // Stop it just after a heartbeat, so every round starts the same distance from the next one.
    const previous = worker.lastHeartbeatAt;
    const beat = await pollUntil(
      `a heartbeat from ${worker.id}`,
      async () => {
        const at = (await hive.client.getWorker(worker.id)).last_heartbeat_at;
        return at !== null && at !== previous ? at : undefined;
      },
      10_000,
      pollIntervalMs,
    );
    const stoppedAt = performance.now();
    process.kill(worker.pid, 'SIGSTOP');
    const sinceHeartbeat = Date.now() - Date.parse(beat);
    const seen = await untilNotServing(hive, worker.id);
    return {
      run,
      worker_id: worker.id,
      detect_ms: seen.at - stoppedAt,
      state: seen.state,
      reason: seen.reason,
      since_heartbeat_ms: sinceHeartbeat,
      group_gone: await groupGoneSoon(worker.pid),
    };
  } finally {
    // A stopped process would hold its memory forever: wake it so the SIGKILL lands, whatever happened.
    signalGroup(worker.pid, 'SIGCONT');
    signalGroup(worker.pid, 'SIGKILL');
  }
}

async function withHive<T>(args: string[], work: (hive: HiveProcess) => Promise<T>): Promise<T> {
  const hive = await startHiveProcess({args});
  try {
    return await work(hive);
  } finally {
    await hive.stop();
  }
}

export async function runCrashDetection(options: CrashOptions): Promise<CrashResult> {
  const crashSamples: DetectionSample[] = [];
  const hang: HangResult[] = [];
  for (const hiveInterval of [5_000, 500]) {
    await withHive(hiveInterval === 5_000 ? [] : ['--heartbeat-interval', String(hiveInterval)], async hive => {
      options.log(
        `crash detection: hive ${hive.url} (pid ${hive.pid}), heartbeat interval ${hiveInterval} ms, watchdog every ${watchdogPeriod(hiveInterval)} ms`,
      );
      if (hiveInterval === 5_000) {
        for (let run = 0; run < options.runs; run++) {
          const sample = await crashOnce(hive, options, run);
          options.log(
            `crash ${run + 1}/${options.runs}: ${sample.detect_ms.toFixed(1)} ms (reaped after ${sample.reaped_ms?.toFixed(1)} ms) → ${sample.state} (${sample.reason})`,
          );
          crashSamples.push(sample);
        }
      }
      const samples: DetectionSample[] = [];
      for (let run = 0; run < options.runs; run++) {
        const sample = await hangOnce(hive, options, run);
        options.log(
          `hang ${run + 1}/${options.runs} (hive ${hiveInterval} ms): ${sample.detect_ms.toFixed(1)} ms after SIGSTOP, ${sample.since_heartbeat_ms} ms after the last heartbeat → ${sample.state} (${sample.reason})`,
        );
        samples.push(sample);
      }
      hang.push({
        hive_heartbeat_interval_ms: hiveInterval,
        watchdog_period_ms: watchdogPeriod(hiveInterval),
        detect_ms: roundSummary(summarize(samples.map(sample => sample.detect_ms))),
        from_last_heartbeat_ms: roundSummary(summarize(samples.map(sample => sample.detect_ms + (sample.since_heartbeat_ms ?? 0)))),
        samples,
      });
    });
  }
  return {
    config: {
      runs: options.runs,
      threads: 1,
      parallel: 1,
      context_size: 512,
      crash_heartbeat_interval_ms: crashHeartbeatMs,
      hang_heartbeat_interval_ms: hangHeartbeatMs,
      poll_interval_ms: pollIntervalMs,
    },
    crash: {
      hive_heartbeat_interval_ms: 5_000,
      detect_ms: roundSummary(summarize(crashSamples.map(sample => sample.detect_ms))),
      reaped_ms: roundSummary(summarize(crashSamples.map(sample => sample.reaped_ms ?? Number.NaN))),
      samples: crashSamples,
    },
    hang,
  };
}
