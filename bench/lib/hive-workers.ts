/** Waiting on a worker the benchmark asked a hive for, through the hive's typed client. */
import type {WorkerInfo} from '../../src/protocol/wire.js';
import type {HiveProcess} from './hive-process.js';
import {pollUntil} from './http.js';

/**
 * Polls GET /v1/workers/:id until the worker is ready, noting its pid for the hive's cleanup; a
 * worker that failed or stopped ends the wait with its reason.
 */
export async function waitUntilReady(hive: HiveProcess, id: string, options: {timeoutMs: number; intervalMs: number}): Promise<WorkerInfo> {
  return pollUntil(
    `worker ${id} to be ready`,
    async () => {
      const current = await hive.client.getWorker(id);
      hive.trackWorker(current.pid);
      if (current.state === 'failed' || current.state === 'stopped') {
        throw new Error(`worker ${id} ${current.state}: ${current.reason}`);
      }
      return current.state === 'ready' ? current : undefined;
    },
    options.timeoutMs,
    options.intervalMs,
  );
}
