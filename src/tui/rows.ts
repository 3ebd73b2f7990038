/**
 * The table's rows from the model: filtered, in a stable order, and with worker groups as a tree
 * (a group line, its coordinator, then its shards). Membership comes from the hive's worker record
 * (known before the first heartbeat) or, for workers another hive describes, from their heartbeats.
 */
import type {GroupHealth, GroupInfo, WorkerInfo} from '../protocol/wire.js';
import {isAliveState, type WorkerRow} from './model.js';

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
  /** Tree drawing before the id: '' outside a group, '├ ' / '└ ' inside one. */
  branch: string;
};

export type TableLine = GroupLine | WorkerLine;

export type RowOptions = {filter: string; showHistory: boolean; groups?: ReadonlyMap<string, GroupInfo>};

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

function order(a: WorkerRow, b: WorkerRow): number {
  const ended = Number(!isAliveState(a.info.state)) - Number(!isAliveState(b.info.state));
  if (ended !== 0) {
    return ended;
  }
  if (a.info.started_at !== b.info.started_at) {
    return a.info.started_at < b.info.started_at ? -1 : 1;
  }
  return a.info.worker_id < b.info.worker_id ? -1 : a.info.worker_id > b.info.worker_id ? 1 : 0;
}

export function tableLines(workers: Iterable<WorkerRow>, options: RowOptions): TableLine[] {
  const shown = [...workers].filter(row => (options.showHistory || !row.history) && matchesFilter(row, options.filter)).sort(order);
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
      lines.push({kind: 'worker', row, branch: ''});
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
