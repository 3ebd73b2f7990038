/**
 * Follows the hive's event stream for the dashboard: validates each event, hands them over in
 * batches (heartbeats at most every `flushMs`, state changes at once), and when the stream ends or
 * the hive is unreachable, reconnects with exponential backoff, saying so through `onConnection`.
 */
import {HiveEventSchema, type HiveEvent} from '../protocol/wire.js';
import type {DashboardApi} from './dashboard-api.js';
import type {ConnectionState} from './model.js';

export type Backoff = {initialMs: number; maxMs: number};

export type EventFeedOptions = {
  api: Pick<DashboardApi, 'subscribe'>;
  onEvents: (events: HiveEvent[]) => void;
  onConnection: (connection: ConnectionState) => void;
  onRejected?: (count: number) => void;
  /** Heartbeats are handed over at most once per this many ms (one render per batch). Default 200 ms: 5 frames/s. */
  flushMs?: number;
  backoff?: Backoff;
  now?: () => number;
};

export const defaultBackoff: Backoff = {initialMs: 250, maxMs: 5_000};

/** The wait before reconnect attempt `attempt` (1, 2, …): doubling from initialMs, capped, with ±20 % jitter. */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number = Math.random): number {
  const base = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}

function wait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, {once: true});
  });
}

const numericHeartbeatFields = ['vram_used', 'vram_total', 'ram_used', 'requests_total', 'tokens_generated', 'uptime_seconds', 'queue_depth', 'batch_size', 'throughput_tokens_per_second'] as const;

/**
 * A heartbeat event, checked only as far as the dashboard relies on it. The hive has validated every
 * heartbeat against HeartbeatSchema when it took it in, and these are 500 a second on a big hive:
 * the full schema here would cost the dashboard more CPU than everything else it does with them.
 * Snapshots and worker changes, rare, always get the full schema.
 */
export function isHeartbeatEvent(value: unknown): value is Extract<HiveEvent, {type: 'heartbeat'}> {
  if (typeof value !== 'object' || value === null) {
    return false;
  }
  const event = value as {type?: unknown; at?: unknown; worker_id?: unknown; heartbeat?: unknown};
  if (event.type !== 'heartbeat' || typeof event.at !== 'string' || typeof event.worker_id !== 'string' || typeof event.heartbeat !== 'object' || event.heartbeat === null) {
    return false;
  }
  const heartbeat = event.heartbeat as Record<string, unknown>;
  if (heartbeat.worker_id !== event.worker_id || typeof heartbeat.status !== 'string' || Number.isNaN(Date.parse(event.at))) {
    return false;
  }
  for (const field of numericHeartbeatFields) {
    const figure = heartbeat[field];
    if (figure !== undefined && (typeof figure !== 'number' || !Number.isFinite(figure) || figure < 0)) {
      return false;
    }
  }
  const progress = heartbeat.workflow_progress as {progress?: unknown; current_node?: unknown} | null | undefined;
  if (progress !== undefined && progress !== null && (typeof progress.progress !== 'number' || typeof progress.current_node !== 'string')) {
    return false;
  }
  return true;
}

export function startEventFeed(options: EventFeedOptions): {stop(): void} {
  const controller = new AbortController();
  const {signal} = controller;
  const now = options.now ?? Date.now;
  const flushMs = options.flushMs ?? 200;
  const backoff = options.backoff ?? defaultBackoff;
  let queue: HiveEvent[] = [];
  let rejected = 0;
  let timer: NodeJS.Timeout | null = null;
  let immediate: NodeJS.Immediate | null = null;

  let lastFlush = Number.NEGATIVE_INFINITY;
  const flush = () => {
    lastFlush = now();
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    if (immediate !== null) {
      clearImmediate(immediate);
      immediate = null;
    }
    if (signal.aborted) {
      return;
    }
    if (rejected > 0) {
      options.onRejected?.(rejected);
      rejected = 0;
    }
    if (queue.length > 0) {
      const batch = queue;
      queue = [];
      options.onEvents(batch);
    }
  };

  const receive = (data: string) => {
    let event: HiveEvent;
    try {
      const value: unknown = JSON.parse(data);
      if (isHeartbeatEvent(value)) {
        event = value;
      } else {
        const parsed = HiveEventSchema.safeParse(value);
        if (!parsed.success) {
          rejected++;
          return;
        }
        event = parsed.data;
      }
    } catch {
      rejected++;
      return;
    }
    queue.push(event);
    if (event.type === 'heartbeat') {
      // One batch per flushMs at most, on a steady beat: a frame every flushMs while heartbeats flow.
      timer ??= setTimeout(flush, Math.max(0, lastFlush + flushMs - now()));
    } else {
      immediate ??= setImmediate(flush);
    }
  };

  void (async () => {
    let attempt = 0;
    options.onConnection({phase: 'connecting', since: now()});
    while (!signal.aborted) {
      let live = false;
      let error = 'the hive closed the event stream';
      try {
        await options.api.subscribe(data => {
          if (!live) {
            live = true;
            attempt = 0;
            options.onConnection({phase: 'live', since: now()});
          }
          receive(data);
        }, signal);
      } catch (caught) {
        error = caught instanceof Error ? caught.message : String(caught);
      }
      if (signal.aborted) {
        return;
      }
      flush();
      attempt++;
      const delay = backoffDelay(attempt, backoff);
      options.onConnection({phase: 'reconnecting', since: now(), attempt, retryAt: now() + delay, error});
      await wait(delay, signal);
    }
  })();

  return {
    stop() {
      controller.abort();
      if (timer !== null) {
        clearTimeout(timer);
      }
      if (immediate !== null) {
        clearImmediate(immediate);
      }
    },
  };
}
