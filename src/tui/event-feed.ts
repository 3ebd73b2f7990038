/**
 * Follows the hive's event stream for the dashboard: validates each event, hands them over in
 * batches (heartbeats at most every `flushMs`, state changes at once), and when the stream ends or
 * the hive is unreachable, reconnects with exponential backoff, saying so through `onConnection`.
 */
import {HiveEventSchema, type HiveEvent, knownGoodHeartbeatEvent} from '../protocol/wire.js';
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

/**
 * An event from the stream, or null when it is malformed. Every event, heartbeats included, is held
 * to the full wire schema: the dashboard draws and filters on fields a bad heartbeat could get
 * wrong (a numeric group_id would break the filter). A heartbeat of the common shape is checked by
 * knownGoodHeartbeatEvent, field for field the schema's checks without zod's object walk (the
 * schema's share of the feed was the largest at 500 heartbeats a second); whatever that does not
 * vouch for goes through the schema.
 */
export function parseHiveEvent(data: string): HiveEvent | null {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  let event: HiveEvent | undefined = knownGoodHeartbeatEvent(value);
  if (event === undefined) {
    const parsed = HiveEventSchema.safeParse(value);
    if (!parsed.success) {
      return null;
    }
    event = parsed.data;
  }
  // The reducer files a heartbeat under the event's worker_id: it must be the heartbeat's own.
  return event.type === 'heartbeat' && event.heartbeat.worker_id !== event.worker_id ? null : event;
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
    const event = parseHiveEvent(data);
    if (event === null) {
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
