/**
 * (a) Spawn → ready: how long from asking a hive for a worker to that worker being routable,
 * against the floor for the same work, a bare Node process that loads the same model with
 * node-llama-cpp and creates the same context.
 *
 *   rbee:  POST /v1/workers {model, threads, parallel: 1, context_size} on a running hive, then
 *          GET /v1/workers/:id every 20 ms until state "ready" (the hive learns it from the worker's
 *          heartbeat). Also timed: when the worker's own /health first said ready, so the hive's
 *          notice lag is visible. Then DELETE /v1/workers/:id and wait for "stopped".
 *   peer:  spawn `node bench/peer-load-context.mjs`, time to its "ready" line; then SIGTERM and
 *          time to its exit.
 *
 * Runs alternate (rbee first on even runs, peer first on odd ones) after one unrecorded warm-up
 * of each, so file-cache and CPU-frequency drift hit both sides alike.
 */
import {spawn} from 'node:child_process';
import {fileURLToPath} from 'node:url';
import {onCleanup} from './lib/cleanup.js';
import {startHiveProcess, repoRoot, type HiveProcess} from './lib/hive-process.js';
import {pollUntil, sleep} from './lib/http.js';
import {ratio, roundSummary, summarize, type Summary} from './lib/stats.js';

const peerScript = fileURLToPath(new URL('./peer-load-context.mjs', import.meta.url));

export type SpawnReadyOptions = {
  modelPath: string;
  runs: number;
  threads: number;
  contextSize: number;
  heartbeatIntervalMs: number;
  warmup: boolean;
  log: (message: string) => void;
};

export type RbeeSpawnSample = {
  run: number;
  /** POST /v1/workers to the hive reporting "ready". */
  ready_ms: number;
  /** POST /v1/workers round trip (the hive answers before the model loads). */
  post_ms: number;
  /** POST to the worker's own /health answering 200, polled alongside. */
  worker_health_ready_ms: number | null;
  /** DELETE /v1/workers/:id round trip (the hive answers once the process has exited). */
  stop_ms: number;
  /** The worker's process group was gone once the hive said stopped. */
  process_gone: boolean;
};

export type PeerSpawnSample = {run: number; ready_ms: number; stop_ms: number; exit_code: number | null};

export type SpawnReadyResult = {
  config: {runs: number; threads: number; parallel: 1; context_size: number; hive_heartbeat_interval_ms: number; poll_interval_ms: number; warmup: boolean};
  rbee: {ready_ms: Summary; stop_ms: Summary; worker_health_ready_ms: Summary; hive_notice_lag_ms: Summary; post_ms: Summary; samples: RbeeSpawnSample[]};
  peer: {ready_ms: Summary; stop_ms: Summary; samples: PeerSpawnSample[]};
  /** rbee / peer, of the medians. */
  ratio_ready: number;
  ratio_stop: number;
  /** Median rbee ready minus median peer ready, in ms. */
  overhead_ready_ms: number;
  hive_stop_ms: number;
};

const pollIntervalMs = 20;

function processGroupGone(pid: number | null): boolean {
  if (pid === null) {
    return true;
  }
  try {
    process.kill(-pid, 0);
    return false;
  } catch {
    return true;
  }
}

async function rbeeOnce(hive: HiveProcess, options: SpawnReadyOptions, run: number): Promise<RbeeSpawnSample> {
  const began = performance.now();
  const created = await hive.client.spawnWorker(
    {
      model: options.modelPath,
      threads: options.threads,
      parallel: 1,
      context_size: options.contextSize,
    },
    {timeoutMs: 60_000},
  );
  const postMs = performance.now() - began;
  const id = created.worker_id;
  const workerUrl = created.url;
  // The worker's own port answers only with its key, which the hive gives from the spawn on.
  const workerKey = (await hive.client.workerKey(id)).key;
  let pid: number | null = null;
  let healthReadyAt: number | null = null;
  try {
    const readyAt = await pollUntil(
      `worker ${id} to be ready`,
      async () => {
        const [info, health] = await Promise.all([
          hive.client.getWorker(id, {timeoutMs: 10_000}),
          // The worker's own /health, not the hive's API: plain fetch, with the worker's key.
          healthReadyAt === null
            ? fetch(`${workerUrl}/health`, {signal: AbortSignal.timeout(2_000), headers: {authorization: `Bearer ${workerKey}`}}).then(
                response => {
                  void response.body?.cancel();
                  return response.status;
                },
                () => 0,
              )
            : Promise.resolve(200),
        ]);
        const now = performance.now();
        if (health === 200 && healthReadyAt === null) {
          healthReadyAt = now;
        }
        pid ??= info.pid;
        hive.trackWorker(pid);
        const {state} = info;
        if (state === 'failed' || state === 'stopped') {
          throw new Error(`worker ${id} ${state}: ${info.reason}`);
        }
        return state === 'ready' ? now : undefined;
      },
      120_000,
      pollIntervalMs,
    );

    const stopBegan = performance.now();
    await hive.client.stopWorker(id, {timeoutMs: 60_000});
    const stoppedAt = await pollUntil(
      `worker ${id} to stop`,
      async () => {
        const info = await hive.client.getWorker(id, {timeoutMs: 10_000});
        return info.state === 'stopped' ? performance.now() : undefined;
      },
      60_000,
      pollIntervalMs,
    );
    return {
      run,
      ready_ms: readyAt - began,
      post_ms: postMs,
      worker_health_ready_ms: healthReadyAt === null ? null : (healthReadyAt as number) - began,
      stop_ms: stoppedAt - stopBegan,
      process_gone: processGroupGone(pid),
    };
  } catch (error) {
    await hive.client.stopWorker(id, {timeoutMs: 60_000}).catch(() => undefined);
    throw error;
  }
}

async function peerOnce(options: SpawnReadyOptions, run: number): Promise<PeerSpawnSample> {
  const began = performance.now();
  const child = spawn(process.execPath, [peerScript, options.modelPath, String(options.contextSize), String(options.threads)], {
    cwd: repoRoot,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', chunk => {
    stderr = (stderr + String(chunk)).slice(-8_192);
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>(resolve =>
    child.once('exit', code => {
      exitCode = code;
      resolve(code);
    }),
  );
  const unregister = onCleanup(`peer ${child.pid}`, async () => {
    if (exitCode === undefined) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  try {
    const readyAt = await new Promise<number>((resolve, reject) => {
      let stdout = '';
      const timer = setTimeout(() => reject(new Error(`peer not ready after 120 s: ${stderr}`)), 120_000);
      child.stdout.on('data', chunk => {
        stdout += String(chunk);
        if (stdout.includes('ready\n')) {
          clearTimeout(timer);
          resolve(performance.now());
        }
      });
      void exited.then(code => {
        clearTimeout(timer);
        reject(new Error(`peer exited with ${code} before ready: ${stderr}`));
      });
    });
    const stopBegan = performance.now();
    child.kill('SIGTERM');
    const killTimer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await exited;
    clearTimeout(killTimer);
    return {run, ready_ms: readyAt - began, stop_ms: performance.now() - stopBegan, exit_code: code};
  } finally {
    if (exitCode === undefined) {
      child.kill('SIGKILL');
      await exited;
    }
    unregister();
  }
}

export async function runSpawnReady(options: SpawnReadyOptions): Promise<SpawnReadyResult> {
  const hive = await startHiveProcess({args: ['--heartbeat-interval', String(options.heartbeatIntervalMs)]});
  options.log(`hive ${hive.url} (pid ${hive.pid})`);
  const rbeeSamples: RbeeSpawnSample[] = [];
  const peerSamples: PeerSpawnSample[] = [];
  let hiveStopMs = Number.NaN;
  try {
    if (options.warmup) {
      const warmRbee = await rbeeOnce(hive, options, -1);
      const warmPeer = await peerOnce(options, -1);
      options.log(`warm-up (not recorded): rbee ${warmRbee.ready_ms.toFixed(0)} ms, peer ${warmPeer.ready_ms.toFixed(0)} ms`);
    }
    for (let run = 0; run < options.runs; run++) {
      const order = run % 2 === 0 ? (['rbee', 'peer'] as const) : (['peer', 'rbee'] as const);
      for (const side of order) {
        await sleep(300); // let the previous process's memory go back before the next one starts
        if (side === 'rbee') {
          const sample = await rbeeOnce(hive, options, run);
          rbeeSamples.push(sample);
          options.log(
            `run ${run + 1}/${options.runs} rbee: ready ${sample.ready_ms.toFixed(0)} ms (worker /health ${sample.worker_health_ready_ms?.toFixed(0) ?? '?'} ms), stop ${sample.stop_ms.toFixed(0)} ms`,
          );
        } else {
          const sample = await peerOnce(options, run);
          peerSamples.push(sample);
          options.log(`run ${run + 1}/${options.runs} peer: ready ${sample.ready_ms.toFixed(0)} ms, stop ${sample.stop_ms.toFixed(0)} ms`);
        }
      }
    }
  } finally {
    hiveStopMs = await hive.stop();
  }

  const rbeeReady = summarize(rbeeSamples.map(sample => sample.ready_ms));
  const peerReady = summarize(peerSamples.map(sample => sample.ready_ms));
  const rbeeStop = summarize(rbeeSamples.map(sample => sample.stop_ms));
  const peerStop = summarize(peerSamples.map(sample => sample.stop_ms));
  const healthSamples = rbeeSamples.filter(sample => sample.worker_health_ready_ms !== null);
  return {
    config: {
      runs: options.runs,
      threads: options.threads,
      parallel: 1,
      context_size: options.contextSize,
      hive_heartbeat_interval_ms: options.heartbeatIntervalMs,
      poll_interval_ms: pollIntervalMs,
      warmup: options.warmup,
    },
    rbee: {
      ready_ms: roundSummary(rbeeReady, 1),
      stop_ms: roundSummary(rbeeStop, 1),
      worker_health_ready_ms: roundSummary(summarize(healthSamples.map(sample => sample.worker_health_ready_ms as number)), 1),
      hive_notice_lag_ms: roundSummary(summarize(healthSamples.map(sample => sample.ready_ms - (sample.worker_health_ready_ms as number))), 1),
      post_ms: roundSummary(summarize(rbeeSamples.map(sample => sample.post_ms)), 1),
      samples: rbeeSamples.map(sample => ({
        ...sample,
        ready_ms: Math.round(sample.ready_ms * 10) / 10,
        post_ms: Math.round(sample.post_ms * 10) / 10,
        worker_health_ready_ms: sample.worker_health_ready_ms === null ? null : Math.round(sample.worker_health_ready_ms * 10) / 10,
        stop_ms: Math.round(sample.stop_ms * 10) / 10,
      })),
    },
    peer: {
      ready_ms: roundSummary(peerReady, 1),
      stop_ms: roundSummary(peerStop, 1),
      samples: peerSamples.map(sample => ({...sample, ready_ms: Math.round(sample.ready_ms * 10) / 10, stop_ms: Math.round(sample.stop_ms * 10) / 10})),
    },
    ratio_ready: Math.round(ratio(rbeeReady.median, peerReady.median) * 1000) / 1000,
    ratio_stop: Math.round(ratio(rbeeStop.median, peerStop.median) * 1000) / 1000,
    overhead_ready_ms: Math.round((rbeeReady.median - peerReady.median) * 10) / 10,
    hive_stop_ms: Math.round(hiveStopMs * 10) / 10,
  };
}
