/**
 * The detail pane's sentences: what the selected worker is doing, in words, from its record and
 * last heartbeat (not a dump of the heartbeat's keys). Pure, so each sentence is tested as text.
 */
import type {GroupInfo} from '../protocol/wire.js';
import {compactAge, compactBytes, compactDuration, compactRate} from './format.js';
import {isAliveState, shownState, workerMemory, workerRates, type WorkerRow} from './model.js';
import type {AutoscaleEvent} from '../protocol/wire.js';
import {decisionText} from './decision-text.js';

export type DescribeContext = {
  now: number;
  /** The device's memory total (RAM for cpu), when the hive reported it. */
  deviceMemory: number | undefined;
  group: GroupInfo | undefined;
  /** The worker this dashboard restarted into this one. */
  restartedFrom: string | undefined;
  /** The latest models-on-demand decision about this worker. */
  decision?: AutoscaleEvent | undefined;
};

const plural = (count: number, word: string) => `${count} ${word}${count === 1 ? '' : 's'}`;

function percentOf(part: number, whole: number): string {
  return `${Math.round((part / whole) * 100)}%`;
}

export function describeWorker(row: WorkerRow, context: DescribeContext): string[] {
  const {info} = row;
  const heartbeat = info.last_heartbeat;
  const alive = isAliveState(info.state);
  const lines: string[] = [];

  const engine =
    heartbeat?.adapter_type === undefined || heartbeat.adapter_type === info.type ? info.type : `${heartbeat.adapter_type} (worker type ${info.type})`;
  const shape = [
    info.context_size === null ? null : `context ${info.context_size} tokens`,
    info.parallel === null ? null : `${info.parallel} at once`,
    info.threads === null ? (heartbeat?.threads === undefined ? null : plural(heartbeat.threads, 'thread')) : plural(info.threads, 'thread'),
  ].filter(part => part !== null);
  lines.push(`Serves ${info.model} with ${engine} on ${info.device}${shape.length === 0 ? '' : ` (${shape.join(', ')})`}.`);

  const state = shownState(row);
  if (state === 'failed' || state === 'stopped') {
    lines.push(`${state === 'failed' ? 'Failed' : 'Stopped'}${info.reason === null ? '' : `: ${info.reason}`}.`);
  } else if (state === 'starting') {
    const progress = info.progress;
    const how =
      progress === null
        ? 'waiting for its first heartbeat'
        : progress.total === null || progress.total === 0
          ? `${progress.phase}, ${compactBytes(progress.done)} so far`
          : `${progress.phase}, ${percentOf(progress.done, progress.total)} done`;
    lines.push(`Starting: ${how}.`);
  } else {
    const queued = heartbeat?.queue_depth ?? 0;
    const doing = row.inFlight > 0 ? `${plural(row.inFlight, 'request')} in flight through the hive` : state === 'busy' ? 'generating' : 'idle';
    lines.push(
      `${state === 'stopping' ? 'Stopping' : state === 'busy' ? 'Busy' : 'Ready'}: ${doing}${queued > 0 ? `, ${queued} waiting in its queue` : ''}${info.draining ? '; draining (takes nothing new)' : ''}.`,
    );
  }

  if (alive) {
    const rates = workerRates(row, context.now);
    const rate =
      rates.source === 'none'
        ? 'no throughput reported yet'
        : `${compactRate(rates.tokensPerSecond)} tokens/s ${rates.source === 'requests' ? `now (the hive's requests of the last 5 s${rates.requestsPerSecond > 0 ? `, ${compactRate(rates.requestsPerSecond)} requests/s` : ''})` : 'at its last heartbeat'}`;
    const totals =
      heartbeat?.requests_total === undefined
        ? ''
        : ` · ${plural(heartbeat.tokens_generated ?? 0, 'token')} in ${plural(heartbeat.requests_total, 'request')} since it started`;
    const last =
      heartbeat?.last_request_at === null || heartbeat?.last_request_at === undefined
        ? ''
        : ` · last request ${compactAge(Math.max(0, context.now - Date.parse(heartbeat.last_request_at)))} ago`;
    lines.push(`Throughput: ${rate}${totals}${last}.`);

    const memory = workerMemory(row);
    const total = info.device === 'cpu' ? context.deviceMemory : heartbeat?.vram_total || context.deviceMemory;
    const held =
      heartbeat === null
        ? 'memory not reported yet'
        : `${compactBytes(memory)} ${info.device === 'cpu' ? 'RAM' : 'VRAM'}${total === undefined || total <= 0 ? '' : ` of ${compactBytes(total)} on ${info.device} (${percentOf(memory, total)})`}`;
    const cpu = heartbeat?.cpu_percent === undefined ? '' : ` · CPU ${heartbeat.cpu_percent.toFixed(0)}% of one core`;
    lines.push(`Memory: ${held}${cpu}.`);
  }

  const models = heartbeat?.loaded_models ?? [];
  if (models.length > 1 || heartbeat?.vram_allocations !== undefined) {
    const allocations = heartbeat?.vram_allocations ?? {};
    lines.push(
      `Models loaded: ${models.map(name => (allocations[name] === undefined ? name : `${name} (${compactBytes(allocations[name]!)})`)).join(', ') || 'none'}.`,
    );
  }
  const workflow = heartbeat?.workflow_progress;
  if (workflow !== undefined && workflow !== null) {
    // rbee's workflow id when the worker names it (what `rbee workflow cancel` takes), else the engine's prompt id.
    const name = heartbeat?.current_workflow ?? workflow.prompt_id;
    const node = workflow.current_node === '' ? 'starting' : `now at node ${workflow.current_node}`;
    lines.push(`Workflow ${name}: ${Math.round(workflow.progress * 100)}% of the current node done, ${node}.`);
  } else if (heartbeat?.current_workflow === null) {
    const queued = heartbeat.queue_depth ?? 0;
    lines.push(`No workflow running${queued > 0 ? `; ${queued} queued` : ''}.`);
  }

  const groupId = info.group_id ?? heartbeat?.group_id;
  if (groupId !== undefined && groupId !== null) {
    const role = info.role ?? heartbeat?.role;
    const health = context.group?.health ?? heartbeat?.group_health;
    const shards = heartbeat?.shard_workers?.map(shard => `${shard.worker_id} ${shard.status}`).join(', ');
    lines.push(
      `${role === 'coordinator' ? 'Coordinator' : 'Shard'} of group ${groupId}${context.group === undefined ? '' : ` over ${context.group.devices.join(', ')}`}${health === undefined ? '' : `, which is ${health}`}${shards === undefined || shards === '' ? '' : `; shards: ${shards}`}.`,
    );
  }

  const life = [
    alive && heartbeat?.uptime_seconds !== undefined ? `up ${compactDuration(heartbeat.uptime_seconds)}` : null,
    `${plural(info.restarts, 'restart')} (policy ${info.restart})`,
    info.adopted ? 're-adopted by a restarted hive' : null,
    context.restartedFrom === undefined ? null : `restarted by this dashboard from ${context.restartedFrom}`,
  ].filter(part => part !== null);
  lines.push(`${life.join(' · ')}.`.replace(/^./, first => first.toUpperCase()));
  if (context.decision !== undefined) {
    lines.push(`On demand: ${decisionText(context.decision)} at ${context.decision.at.slice(11, 19)} — ${context.decision.reason}.`);
  }
  return lines;
}

const levels = ' ▁▂▃▄▅▆▇█';

/**
 * The throughput history as a bar chart `height` lines tall, newest on the right, one column per
 * heartbeat (two characters wide when there is room): what the free lines of the pane show.
 */
export function throughputChart(values: readonly number[], height: number, width: number): string[] {
  if (values.length === 0 || height <= 0) {
    return [];
  }
  const peak = Math.max(...values);
  const columnWidth = values.length * 2 <= width ? 2 : 1;
  const shown = values.slice(-Math.max(1, Math.floor(width / columnWidth)));
  const eighths = shown.map(value => (peak <= 0 ? 0 : Math.round((value / peak) * height * 8)));
  return Array.from({length: height}, (_, line) => {
    const floor = (height - 1 - line) * 8;
    return shown.map((_, index) => levels[Math.max(0, Math.min(8, eighths[index]! - floor))]!.repeat(columnWidth)).join('');
  });
}
