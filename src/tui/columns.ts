/**
 * The worker table's columns: which fit the terminal's width, and each line's cells as plain
 * strings with a colour. Pure, so the layout is tested without rendering and a row is one ink
 * <Text> (cheap to render at 500 workers).
 */
import type {DeviceInfo, GroupHealth} from '../protocol/wire.js';
import type {Color, Segment} from './ansi.js';
import {bar, compactAgeSeconds, compactBytes, compactDuration, compactRate, fit, sparkline} from './format.js';
import {heartbeatAge, isAliveState, isStale, shownState, workerRates, type WorkerRow} from './model.js';
import type {TableLine} from './rows.js';

export type Cell = Segment;

export type ColumnKey =
  'id' | 'type' | 'model' | 'device' | 'status' | 'memory' | 'cpu' | 'requests' | 'throughput' | 'queue' | 'workflow' | 'uptime' | 'heartbeat';

type ColumnSpec = {
  title: string;
  width: number;
  align: 'left' | 'right';
  /** Dropped first when the terminal is narrow: higher goes first; 0 never. */ drop: number;
};

const sparkWidth = 10;
const memoryBarWidth = 8;
const workflowBarWidth = 6;

const specs: Record<ColumnKey, ColumnSpec> = {
  id: {title: 'ID', width: 18, align: 'left', drop: 0},
  type: {title: 'TYPE', width: 9, align: 'left', drop: 9},
  model: {title: 'MODEL', width: 12, align: 'left', drop: 0},
  device: {title: 'DEVICE', width: 7, align: 'left', drop: 5},
  status: {title: 'STATUS', width: 8, align: 'left', drop: 0},
  memory: {title: 'VRAM/RAM', width: memoryBarWidth + 1 + 11, align: 'left', drop: 2},
  cpu: {title: 'CPU%', width: 5, align: 'right', drop: 6},
  requests: {title: 'REQS', width: 6, align: 'right', drop: 6},
  throughput: {title: 'TOK/S', width: sparkWidth + 1 + 5, align: 'left', drop: 3},
  queue: {title: 'QUEUE', width: 5, align: 'right', drop: 7},
  workflow: {title: 'WORKFLOW', width: workflowBarWidth + 6 + 14, align: 'left', drop: 4},
  uptime: {title: 'UPTIME', width: 6, align: 'right', drop: 8},
  heartbeat: {title: 'HEARTBEAT', width: 9, align: 'right', drop: 1},
};

const order: ColumnKey[] = ['id', 'type', 'model', 'device', 'status', 'memory', 'cpu', 'requests', 'throughput', 'queue', 'workflow', 'uptime', 'heartbeat'];

export type Column = {key: ColumnKey; title: string; width: number; align: 'left' | 'right'};

/** The longest type name a type column holds whole; longer ones (plugins may use 64) are cut. */
const maxTypeWidth = 24;

/** The type column's width for these rows: their longest type name, so "tensorrt-llm" is never cut. */
export function typeColumnWidth(types: Iterable<string>): number {
  let width = specs.type.width;
  for (const type of types) {
    width = Math.max(width, Math.min(maxTypeWidth, type.length));
  }
  return width;
}

/** Columns with a row gutter of 2 and one space between cells; the model column takes what is left (up to 40). */
export function layoutColumns(width: number, options: {workflow: boolean; typeWidth?: number}): Column[] {
  const keys = order.filter(key => key !== 'workflow' || options.workflow);
  const widthOf = (key: ColumnKey) => (key === 'type' ? (options.typeWidth ?? specs.type.width) : specs[key].width);
  const used = (set: ColumnKey[]) => 2 + set.reduce((sum, key) => sum + widthOf(key), 0) + (set.length - 1);
  const droppable = keys.filter(key => specs[key].drop > 0).sort((a, b) => specs[b].drop - specs[a].drop);
  let chosen = keys;
  while (used(chosen) > width && droppable.length > 0) {
    const dropped = droppable.shift()!;
    chosen = chosen.filter(key => key !== dropped);
  }
  const spare = Math.max(0, width - used(chosen));
  return chosen.map(key => ({
    key,
    title: specs[key].title,
    width: key === 'model' ? specs.model.width + Math.min(spare, 28) : widthOf(key),
    align: specs[key].align,
  }));
}

export const stateColors: Record<string, Color> = {
  starting: 'yellow',
  ready: 'green',
  busy: 'cyan',
  stopping: 'magenta',
  stopped: 'gray',
  failed: 'red',
};

function usageColor(fraction: number): Color {
  return fraction < 0.7 ? 'green' : fraction < 0.9 ? 'yellow' : 'red';
}

/** What cells are drawn against. Cells show whole seconds: `now` matters to the second. */
export type CellContext = {now: number; devices: ReadonlyMap<string, DeviceInfo>};

function memoryCell(row: WorkerRow, context: CellContext, width: number): Cell {
  const heartbeat = row.info.last_heartbeat;
  if (heartbeat === null || !isAliveState(row.info.state)) {
    return {text: fit('-', width)};
  }
  const cpu = row.info.device === 'cpu';
  const used = (cpu ? heartbeat.ram_used : heartbeat.vram_used) ?? 0;
  const total = cpu ? context.devices.get('cpu')?.memory_total : heartbeat.vram_total || context.devices.get(row.info.device)?.memory_total;
  if (total === undefined || total <= 0) {
    return {text: fit(`${' '.repeat(memoryBarWidth + 1)}${compactBytes(used)}`, width)};
  }
  const fraction = used / total;
  return {text: fit(`${bar(fraction, memoryBarWidth)} ${compactBytes(used)}/${compactBytes(total)}`, width), color: usageColor(fraction)};
}

function uptimeSeconds(row: WorkerRow, now: number): number | null {
  if (!isAliveState(row.info.state)) {
    return null;
  }
  const reported = row.info.last_heartbeat?.uptime_seconds;
  if (reported !== undefined && row.heartbeatAt !== null) {
    return reported + Math.max(0, now - row.heartbeatAt) / 1_000;
  }
  const started = Date.parse(row.info.started_at);
  return Number.isNaN(started) ? null : Math.max(0, now - started) / 1_000;
}

function workerCell(key: ColumnKey, line: Extract<TableLine, {kind: 'worker'}>, context: CellContext, width: number, align: 'left' | 'right'): Cell {
  const {row} = line;
  const {info} = row;
  const heartbeat = info.last_heartbeat;
  const plain = (text: string, color?: Color): Cell => (color === undefined ? {text: fit(text, width, align)} : {text: fit(text, width, align), color});
  switch (key) {
    case 'id':
      return plain(line.branch + info.worker_id);
    case 'type':
      return plain(info.type);
    case 'model':
      return plain(info.model);
    case 'device':
      return plain(info.device);
    case 'status': {
      const state = shownState(row);
      return plain(info.draining && isAliveState(state) ? 'draining' : state, stateColors[state]);
    }
    case 'cpu': {
      const percent = heartbeat?.cpu_percent;
      return percent === undefined || !isAliveState(info.state) ? plain('-') : plain(percent >= 100 ? String(Math.round(percent)) : percent.toFixed(1));
    }
    case 'memory':
      return memoryCell(row, context, width);
    case 'requests':
      return plain(heartbeat?.requests_total === undefined ? '-' : String(heartbeat.requests_total));
    case 'throughput': {
      const rates = workerRates(row, context.now);
      if (row.throughput.length === 0 && rates.source !== 'requests') {
        return plain('-');
      }
      // The sparkline is the heartbeats' history; the figure is the live one when the hive routed requests lately.
      return plain(`${sparkline(row.throughput, sparkWidth).padEnd(sparkWidth)} ${compactRate(rates.tokensPerSecond).padStart(5)}`, 'cyan');
    }
    case 'queue': {
      const depth = heartbeat?.queue_depth;
      return depth === undefined || !isAliveState(info.state) ? plain('-') : plain(String(depth), depth > 0 ? 'yellow' : undefined);
    }
    case 'workflow': {
      const progress = heartbeat?.workflow_progress;
      if (progress === undefined || progress === null) {
        // A workflow worker with nothing running says so, rather than a dash that reads as "not a workflow worker".
        return heartbeat?.current_workflow === null && isAliveState(info.state) ? plain('idle', 'gray') : plain('-');
      }
      const percent = `${Math.round(progress.progress * 100)}%`.padStart(4);
      return plain(`${bar(progress.progress, workflowBarWidth)} ${percent} ${progress.current_node}`, 'blue');
    }
    case 'uptime': {
      const seconds = uptimeSeconds(row, context.now);
      return plain(seconds === null ? '-' : compactDuration(seconds));
    }
    case 'heartbeat': {
      const age = heartbeatAge(row, context.now);
      if (age === null) {
        return plain(isAliveState(info.state) ? 'none yet' : '-', 'gray');
      }
      if (isStale(row, context.now)) {
        return {text: fit(`⚠ ${compactAgeSeconds(age)}`, width, align), color: 'red', bold: true};
      }
      return plain(compactAgeSeconds(age), isAliveState(info.state) ? undefined : 'gray');
    }
  }
}

const groupHealthColor: Record<GroupHealth | 'unknown', Segment['color']> = {
  healthy: 'green',
  starting: 'yellow',
  degraded: 'red',
  failed: 'red',
  stopped: 'gray',
  unknown: 'gray',
};

/** One table line as cells, each exactly its column's width (a group line is one wide cell). */
export function lineCells(line: TableLine, columns: readonly Column[], context: CellContext): Cell[] {
  if (line.kind === 'group') {
    const width = columns.reduce((sum, column) => sum + column.width, 0) + columns.length - 1;
    const health = line.health ?? 'health unknown';
    const reason = line.reason === null ? '' : ` (${line.reason})`;
    const text = `▾ group ${line.groupId} · coordinator ${line.coordinator ?? '(not heard yet)'} · ${line.shards} shard${line.shards === 1 ? '' : 's'} · ${health}${reason}`;
    return [{text: fit(text, width), color: groupHealthColor[line.health ?? 'unknown'], bold: true}];
  }
  return columns.map(column => workerCell(column.key, line, context, column.width, column.align));
}

export function headerCells(columns: readonly Column[]): string {
  return columns.map(column => fit(column.title, column.width, column.align)).join(' ');
}
