/**
 * What the dashboard knows of the hive, built only from its event stream (GET /v1/events) and
 * GET /v1/status: a pure reducer, events → model. Time comes in with each action, so the same
 * actions always give the same model (the tests and the benchmark feed it directly).
 */
import type {AutoscaleEvent, DeviceInfo, GroupInfo, HiveEvent, HiveStatus, WorkerInfo, WorkerState} from '../protocol/wire.js';

/** The hive's default heartbeat interval: what staleness is judged by until a worker's own interval is seen. */
export const defaultHeartbeatIntervalMs = 5_000;
/** A heartbeat older than this many intervals is flagged stale (the hive itself gives up after 3 missed). */
export const staleIntervals = 3;
/** Throughput samples kept per worker for its sparkline. */
export const throughputHistory = 32;

export type ConnectionState =
  | {phase: 'connecting'; since: number}
  | {phase: 'live'; since: number}
  | {phase: 'reconnecting'; since: number; attempt: number; retryAt: number; error: string};

export type WorkerRow = {
  info: WorkerInfo;
  /** When the last heartbeat was received by the hive (ms since the epoch), or null before the first. */
  heartbeatAt: number | null;
  /** The observed time between this worker's heartbeats (smoothed), or null until two have been seen. */
  intervalMs: number | null;
  /** throughput_tokens_per_second of successive heartbeats, oldest first. */
  throughput: readonly number[];
  /** Already stopped or failed when the dashboard first saw it: history, hidden unless asked for. */
  history: boolean;
  /** Requests in flight through the hive, from its request events (0 until one is seen). */
  inFlight: number;
  /** When the last request event for this worker came (ms), or null: newer than the heartbeat, it wins. */
  requestEventAt: number | null;
  /** Tokens and ended requests the request events reported, per moment, within the rate window. */
  activity: readonly ActivitySample[];
};

export type ActivitySample = {at: number; tokens: number; requests: number};

/** The window request rates are averaged over: short enough to follow a burst, long enough to be steady. */
export const rateWindowMs = 5_000;

export type HiveModel = {
  url: string;
  hive: {url: string; pid: number; version: string} | null;
  connection: ConnectionState;
  workers: ReadonlyMap<string, WorkerRow>;
  /** Worker groups by id, as the hive judges them (their health included). */
  groups: ReadonlyMap<string, GroupInfo>;
  devices: readonly DeviceInfo[];
  /** The newest time the model has been told of (ms since the epoch): ages are measured against it. */
  now: number;
  /** Events applied, and events that failed validation and were dropped. */
  events: number;
  rejected: number;
  /** The hive's latest models-on-demand decisions, oldest first. */
  autoscale: readonly AutoscaleEvent[];
};

/** Decisions kept for the event line and the detail pane. */
const autoscaleHistory = 20;

export type ModelAction =
  | {type: 'events'; events: readonly HiveEvent[]; now: number}
  | {type: 'connection'; connection: ConnectionState}
  | {type: 'status'; status: HiveStatus; now: number}
  | {type: 'rejected'; count: number}
  | {type: 'tick'; now: number};

export function initialModel(url: string, now: number): HiveModel {
  return {
    url,
    hive: null,
    connection: {phase: 'connecting', since: now},
    workers: new Map(),
    groups: new Map(),
    devices: [],
    now,
    events: 0,
    rejected: 0,
    autoscale: [],
  };
}

export function isAliveState(state: WorkerState): boolean {
  return state !== 'stopped' && state !== 'failed';
}

function parseTime(iso: string | null | undefined): number | null {
  if (iso === null || iso === undefined) {
    return null;
  }
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
}

function rowFrom(info: WorkerInfo, previous: WorkerRow | undefined, history: boolean): WorkerRow {
  const heartbeatAt = parseTime(info.last_heartbeat_at);
  const sameHeartbeat = previous !== undefined && previous.heartbeatAt === heartbeatAt;
  let throughput = previous?.throughput ?? [];
  if (!sameHeartbeat && info.last_heartbeat?.throughput_tokens_per_second !== undefined) {
    throughput = [...throughput, info.last_heartbeat.throughput_tokens_per_second].slice(-throughputHistory);
  }
  return {
    info,
    heartbeatAt,
    intervalMs: previous?.intervalMs ?? null,
    throughput,
    history,
    inFlight: isAliveState(info.state) ? (previous?.inFlight ?? 0) : 0,
    // The hive's record is newer than any request event before it: its state is the truth again.
    requestEventAt: null,
    activity: previous?.activity ?? [],
  };
}

function applyRequest(row: WorkerRow, event: Extract<HiveEvent, {type: 'request'}>, now: number): WorkerRow {
  const at = parseTime(event.at) ?? now;
  const tokens = event.tokens ?? 0;
  const requests = event.phase === 'ended' ? 1 : 0;
  const kept =
    row.activity.length > 0 && row.activity[0]!.at < at - rateWindowMs ? row.activity.filter(sample => sample.at >= at - rateWindowMs) : row.activity;
  return {
    ...row,
    inFlight: event.in_flight,
    requestEventAt: at,
    activity: tokens === 0 && requests === 0 ? kept : [...kept, {at, tokens, requests}],
  };
}

function applyHeartbeat(row: WorkerRow, event: Extract<HiveEvent, {type: 'heartbeat'}>): WorkerRow {
  const at = parseTime(event.at) ?? row.heartbeatAt;
  let intervalMs = row.intervalMs;
  if (at !== null && row.heartbeatAt !== null && at > row.heartbeatAt) {
    const observed = at - row.heartbeatAt;
    // Smoothed, so one late heartbeat neither hides nor fakes staleness.
    intervalMs = intervalMs === null ? observed : Math.round(0.7 * intervalMs + 0.3 * observed);
  }
  const rate = event.heartbeat.throughput_tokens_per_second;
  return {
    ...row,
    info: {...row.info, last_heartbeat: event.heartbeat, last_heartbeat_at: event.at},
    heartbeatAt: at,
    intervalMs,
    throughput: rate === undefined ? row.throughput : [...row.throughput, rate].slice(-throughputHistory),
  };
}

function applySnapshot(model: HiveModel, event: Extract<HiveEvent, {type: 'snapshot'}>): HiveModel {
  const workers = new Map<string, WorkerRow>();
  for (const info of event.workers) {
    const previous = model.workers.get(info.worker_id);
    // A worker seen alive by this dashboard stays visible after it ends; one that was already over is history.
    workers.set(info.worker_id, rowFrom(info, previous, previous?.history ?? !isAliveState(info.state)));
  }
  return {...model, hive: event.hive, workers, groups: new Map(event.groups.map(group => [group.group_id, group]))};
}

/** Applies a batch of events at once: one copy of the worker map per batch, however many heartbeats it holds. */
function applyEvents(model: HiveModel, events: readonly HiveEvent[], now: number): HiveModel {
  let next: HiveModel = model;
  let workers: Map<string, WorkerRow> | null = null;
  const writable = (): Map<string, WorkerRow> => {
    if (workers === null) {
      workers = new Map(next.workers);
      next = {...next, workers};
    }
    return workers;
  };
  for (const event of events) {
    if (event.type === 'snapshot') {
      next = applySnapshot(next, event);
      workers = null;
    } else if (event.type === 'heartbeat') {
      const row = next.workers.get(event.worker_id);
      if (row !== undefined) {
        writable().set(event.worker_id, applyHeartbeat(row, event));
      }
    } else if (event.type === 'group') {
      next = {...next, groups: new Map(next.groups).set(event.group.group_id, event.group)};
    } else if (event.type === 'request') {
      const row = next.workers.get(event.worker_id);
      if (row !== undefined) {
        writable().set(event.worker_id, applyRequest(row, event, now));
      }
    } else if (event.type === 'autoscale') {
      next = {...next, autoscale: [...next.autoscale, event].slice(-autoscaleHistory)};
    } else {
      const id = event.worker.worker_id;
      writable().set(id, rowFrom(event.worker, next.workers.get(id), false));
    }
  }
  return {...next, now: Math.max(next.now, now), events: next.events + events.length};
}

export function reduceModel(model: HiveModel, action: ModelAction): HiveModel {
  switch (action.type) {
    case 'events':
      return action.events.length === 0 ? {...model, now: Math.max(model.now, action.now)} : applyEvents(model, action.events, action.now);
    case 'connection':
      return {...model, connection: action.connection, now: Math.max(model.now, action.connection.since)};
    case 'status':
      return {...model, devices: action.status.devices, now: Math.max(model.now, action.now)};
    case 'rejected':
      return {...model, rejected: model.rejected + action.count};
    case 'tick':
      return action.now > model.now ? {...model, now: action.now} : model;
  }
}

/** How long after its last heartbeat a worker counts as stale: 3 × its observed interval (5 s until one is seen). */
export function staleAfterMs(row: WorkerRow): number {
  return staleIntervals * (row.intervalMs ?? defaultHeartbeatIntervalMs);
}

/** Milliseconds since the worker's last heartbeat, or null when it has sent none. */
export function heartbeatAge(row: WorkerRow, now: number): number | null {
  return row.heartbeatAt === null ? null : Math.max(0, now - row.heartbeatAt);
}

/** A live worker whose heartbeats stopped coming: the hive will soon call it hung. */
export function isStale(row: WorkerRow, now: number): boolean {
  if (!isAliveState(row.info.state)) {
    return false;
  }
  const age = heartbeatAge(row, now);
  return age !== null && age > staleAfterMs(row);
}

/** Workers by state (history included), and how many live ones are stale: the header's counts. */
export function countByState(model: HiveModel): {states: Partial<Record<WorkerState, number>>; stale: number} {
  const states: Partial<Record<WorkerState, number>> = {};
  let stale = 0;
  for (const row of model.workers.values()) {
    const state = shownState(row);
    states[state] = (states[state] ?? 0) + 1;
    if (isStale(row, model.now)) {
      stale++;
    }
  }
  return {states, stale};
}

/**
 * The state to show: the hive's record, corrected by request events newer than the last heartbeat
 * (a worker the hive just sent a request is busy now, not at its next heartbeat).
 */
export function shownState(row: WorkerRow): WorkerState {
  const {state} = row.info;
  if (state !== 'ready' && state !== 'busy') {
    return state;
  }
  if (row.inFlight > 0) {
    return 'busy';
  }
  const fresher = row.requestEventAt !== null && (row.heartbeatAt === null || row.requestEventAt >= row.heartbeatAt);
  return fresher ? 'ready' : state;
}

export type WorkerRates = {tokensPerSecond: number; requestsPerSecond: number; source: 'requests' | 'heartbeat' | 'none'};

/**
 * Tokens and requests a second: from the request events of the last window when the hive has
 * routed this worker any (live), else the throughput its last heartbeat reported.
 */
export function workerRates(row: WorkerRow, now: number): WorkerRates {
  if (row.requestEventAt !== null && (row.inFlight > 0 || now - row.requestEventAt < rateWindowMs)) {
    let tokens = 0;
    let requests = 0;
    for (const sample of row.activity) {
      if (sample.at >= now - rateWindowMs) {
        tokens += sample.tokens;
        requests += sample.requests;
      }
    }
    return {tokensPerSecond: tokens / (rateWindowMs / 1_000), requestsPerSecond: requests / (rateWindowMs / 1_000), source: 'requests'};
  }
  const reported = isAliveState(row.info.state) ? row.info.last_heartbeat?.throughput_tokens_per_second : undefined;
  return reported === undefined
    ? {tokensPerSecond: 0, requestsPerSecond: 0, source: 'none'}
    : {tokensPerSecond: reported, requestsPerSecond: 0, source: 'heartbeat'};
}

/** Memory a worker holds on its device (RAM for cpu workers, VRAM otherwise), from its last heartbeat. */
export function workerMemory(row: WorkerRow): number {
  const heartbeat = row.info.last_heartbeat;
  if (heartbeat === null || !isAliveState(row.info.state)) {
    return 0;
  }
  return (row.info.device === 'cpu' ? heartbeat.ram_used : heartbeat.vram_used) ?? 0;
}

export type HiveTotals = {
  workers: number;
  busy: number;
  tokensPerSecond: number;
  requestsPerSecond: number;
  /** Memory the live workers hold, per device, with how many workers hold it. */
  memory: ReadonlyMap<string, {bytes: number; workers: number}>;
};

/** The header's totals: one pass over the workers, only when the model changes. */
export function hiveTotals(model: HiveModel): HiveTotals {
  let workers = 0;
  let busy = 0;
  let tokensPerSecond = 0;
  let requestsPerSecond = 0;
  const memory = new Map<string, {bytes: number; workers: number}>();
  for (const row of model.workers.values()) {
    if (!isAliveState(row.info.state)) {
      continue;
    }
    workers++;
    if (shownState(row) === 'busy') {
      busy++;
    }
    const rates = workerRates(row, model.now);
    tokensPerSecond += rates.tokensPerSecond;
    requestsPerSecond += rates.requestsPerSecond;
    const held = memory.get(row.info.device) ?? {bytes: 0, workers: 0};
    memory.set(row.info.device, {bytes: held.bytes + workerMemory(row), workers: held.workers + 1});
  }
  return {workers, busy, tokensPerSecond, requestsPerSecond, memory};
}
