/** Wire objects for tests and benches: a valid value with every field, the fields a case cares about set by the caller. */
import type {WorkerInfo} from '../../src/protocol/wire.js';

/** A ready llama.cpp worker on the CPU, started a minute before the TUI tests' clock (t0). */
export function workerInfo(fields: Partial<WorkerInfo> & {worker_id: string}): WorkerInfo {
  return {
    type: 'llamacpp',
    model: 'gemma-3-270m-q4_k_m',
    model_path: '/models/gemma-3-270m-q4_k_m.gguf',
    device: 'cpu',
    state: 'ready',
    reason: null,
    pid: 4242,
    port: 40_001,
    url: 'http://127.0.0.1:40001',
    started_at: '2026-11-27T11:59:00.000Z',
    last_heartbeat_at: null,
    last_heartbeat: null,
    progress: null,
    restart: 'on-failure',
    restarts: 0,
    adopted: false,
    draining: false,
    context_size: null,
    parallel: null,
    threads: null,
    max_queue: null,
    group_id: null,
    role: null,
    last_failure: null,
    requests_routed: 0,
    tokens_relayed: 0,
    ...fields,
  };
}
