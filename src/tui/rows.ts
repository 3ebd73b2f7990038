/**
 * The table's rows from the model: filtered, in a stable order, and with worker groups as a tree
 * (a group line, its coordinator, then its shards). Membership comes from the hive's worker record
 * (known before the first heartbeat) or, for workers another hive describes, from their heartbeats.
 */
import type {GroupHealth, GroupInfo, WorkerInfo} from '../protocol/wire.js';
import {isAliveState, shownState, workerMemory, workerRates, type WorkerRow} from './model.js';

export type GroupLine = {
  kind: 'group';
  groupId: string;
  /** The hive's judgement when it sent one, else what the coordinator's heartbeat says. */
  health: GroupHealth | null;
  reason: string | null;
  coordinator: string | null;
  shards: number;
};

export type WorkerLine = {
  kind: 'worker';
  row: WorkerRow;
  /** Before the id: '' outside a group, '├ ' / '└ ' inside one, '↻ ' for a worker this dashboard restarted. */
  branch: string;
};

export type TableLine = GroupLine | WorkerLine;

/** What the table is ordered by (`o` cycles through them). Live workers always come before ended ones. */
export const sortKeys = ['started', 'id', 'type', 'model', 'state', 'tok/s', 'memory', 'cpu'] as const;
export type SortKey = (typeof sortKeys)[number];

export type RowOptions = {
  filter: string;
  showHistory: boolean;
  groups?: ReadonlyMap<string, GroupInfo>;
  sort?: SortKey;
  /** For rates (tok/s order). */
  now?: number;
  /** Workers this dashboard restarted: new id → the id it replaced. The new row takes the old one's place. */
  links?: ReadonlyMap<string, string>;
};

function groupOf(info: WorkerInfo): string | undefined {
  return info.group_id ?? info.last_heartbeat?.group_id;
}

function roleOf(info: WorkerInfo): string | undefined {
  return info.role ?? info.last_heartbeat?.role;
}

/** Whether a worker matches the filter: a case-insensitive substring of its id, model, type, state, device or group. */
export function matchesFilter(row: WorkerRow, filter: string): boolean {
  const needle = filter.trim().toLowerCase();
  if (needle === '') {
    return true;
  }
  const {info} = row;
  const group = groupOf(info) ?? '';
  return [info.worker_id, info.model, info.type, info.state, info.device, group].some(field => field.toLowerCase().includes(needle));
}

type Ordered = {row: WorkerRow; startedAt: string; key: string | number};

function sortValue(row: WorkerRow, sort: SortKey, now: number): string | number {
  switch (sort) {
    case 'started':
      return 0;
    case 'id':
      return row.info.worker_id;
    case 'type':
      return row.info.type;
    case 'model':
      return row.info.model;
    case 'state':
      return shownState(row);
    // Biggest first: negated, so one ascending comparison serves every key.
    case 'tok/s':
      return -workerRates(row, now).tokensPerSecond;
    case 'memory':
      return -workerMemory(row);
    case 'cpu':
      return -(row.info.last_heartbeat?.cpu_percent ?? 0);
  }
}

function order(a: Ordered, b: Ordered): number {
  const ended = Number(!isAliveState(a.row.info.state)) - Number(!isAliveState(b.row.info.state));
  if (ended !== 0) {
    return ended;
  }
  if (a.key !== b.key) {
    return a.key < b.key ? -1 : 1;
  }
  if (a.startedAt !== b.startedAt) {
    return a.startedAt < b.startedAt ? -1 : 1;
  }
  return a.row.info.worker_id < b.row.info.worker_id ? -1 : a.row.info.worker_id > b.row.info.worker_id ? 1 : 0;
}

export function tableLines(workers: Iterable<WorkerRow>, options: RowOptions): TableLine[] {
  const all = [...workers];
  const links = options.links ?? new Map<string, string>();
  const byId = new Map(all.map(row => [row.info.worker_id, row]));
  // A worker replaced by its restart is shown by its successor, in its place.
  const replaced = new Set([...links].filter(([successor]) => byId.has(successor)).map(([, previous]) => previous));
  const firstStart = (row: WorkerRow): string => {
    const previous = links.get(row.info.worker_id);
    const before = previous === undefined ? undefined : byId.get(previous);
    return before === undefined ? row.info.started_at : firstStart(before);
  };
  const sort = options.sort ?? 'started';
  const now = options.now ?? Date.now();
  const shown = all
    .filter(row => !replaced.has(row.info.worker_id) && (options.showHistory || !row.history) && matchesFilter(row, options.filter))
    .map((row): Ordered => ({row, startedAt: firstStart(row), key: sortValue(row, sort, now)}))
    .sort(order)
    .map(entry => entry.row);
  const groups = new Map<string, WorkerRow[]>();
  for (const row of shown) {
    const group = groupOf(row.info);
    if (group !== undefined) {
      groups.set(group, [...(groups.get(group) ?? []), row]);
    }
  }
  const lines: TableLine[] = [];
  const placed = new Set<string>();
  for (const row of shown) {
    const groupId = groupOf(row.info);
    if (groupId === undefined) {
      lines.push({kind: 'worker', row, branch: links.has(row.info.worker_id) ? '↻ ' : ''});
      continue;
    }
    if (placed.has(groupId)) {
      continue;
    }
    placed.add(groupId);
    // The group goes where its first member would have gone: coordinator first, then shards.
    const members = [...(groups.get(groupId) ?? [])].sort((a, b) => Number(roleOf(a.info) !== 'coordinator') - Number(roleOf(b.info) !== 'coordinator'));
    const coordinator = members.find(member => roleOf(member.info) === 'coordinator') ?? null;
    const judged = options.groups?.get(groupId);
    lines.push({
      kind: 'group',
      groupId,
      health: judged?.health ?? coordinator?.info.last_heartbeat?.group_health ?? null,
      reason: judged?.reason ?? null,
      coordinator: coordinator?.info.worker_id ?? null,
      shards: members.filter(member => member !== coordinator).length,
    });
    members.forEach((member, index) => lines.push({kind: 'worker', row: member, branch: index === members.length - 1 ? '└ ' : '├ '}));
  }
  return lines;
}

/** The ids of the selectable lines (workers), in table order. */
export function selectableIds(lines: readonly TableLine[]): string[] {
  return lines.flatMap(line => (line.kind === 'worker' ? [line.row.info.worker_id] : []));
}
