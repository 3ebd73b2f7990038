/** The top four lines: which hive and how the connection is, its devices, workers by state, and the totals. */
import {Box} from 'ink';
import type {DeviceInfo} from '../../protocol/wire.js';
import type {Segment} from '../ansi.js';
import {stateColors} from '../columns.js';
import {bar, compactBytes, compactRate} from '../format.js';
import {countByState, hiveTotals, type ConnectionState, type HiveModel} from '../model.js';
import {useMemo} from 'react';
import {Line} from './Line.js';

function connectionSegment(connection: ConnectionState, now: number): Segment {
  switch (connection.phase) {
    case 'live':
      return {text: '● live', color: 'green'};
    case 'connecting':
      return {text: '○ connecting…', color: 'yellow'};
    case 'reconnecting': {
      const wait = Math.max(0, Math.ceil((connection.retryAt - now) / 1_000));
      return {text: `○ reconnecting… (attempt ${connection.attempt}${wait > 0 ? `, next in ${wait}s` : ''}): ${connection.error}`, color: 'red'};
    }
  }
}

export const headerHeight = 4;

function deviceText(device: DeviceInfo): string {
  if (device.memory_total <= 0) {
    return `${device.id} ${compactBytes(device.memory_used)}`;
  }
  return `${device.id} ${bar(device.memory_used / device.memory_total, 8)} ${compactBytes(device.memory_used)}/${compactBytes(device.memory_total)}`;
}

export function Header({model, width, showing}: {model: HiveModel; width: number; showing: {from: number; to: number; of: number}}) {
  const live = model.connection.phase === 'live';
  const {states, stale} = countByState(model);
  const counts = Object.entries(states).sort(([a], [b]) => a.localeCompare(b));
  const gpus = model.devices.filter(device => device.id !== 'cpu');
  const vramUsed = gpus.reduce((sum, device) => sum + device.memory_used, 0);
  const vramTotal = gpus.reduce((sum, device) => sum + device.memory_total, 0);
  const hive: Segment[] = [
    {text: 'rbee dashboard', bold: true},
    {text: `  ${model.url}`},
    ...(model.hive === null ? [] : [{text: `  hive pid ${model.hive.pid} · rbee ${model.hive.version}`, color: 'gray' as const}]),
    {text: '  '},
    connectionSegment(model.connection, model.now),
  ];
  const devices: Segment[] = [
    {text: 'devices ', bold: true},
    model.devices.length === 0 ? {text: '(not read yet: GET /v1/status)', color: 'gray'} : {text: model.devices.map(deviceText).join('  ·  ')},
    ...(gpus.length > 0 ? [{text: `  ·  VRAM ${compactBytes(vramUsed)}/${compactBytes(vramTotal)}`, bold: true}] : []),
  ];
  const workers: Segment[] = [
    {text: 'workers ', bold: true},
    ...(counts.length === 0
      ? [{text: 'none', color: 'gray' as const}]
      : counts.map(([state, count], index) => ({text: `${index === 0 ? '' : ' · '}${count} ${state}`, color: stateColors[state]}))),
    ...(stale > 0 ? [{text: `  ⚠ ${stale} stale`, color: 'red' as const, bold: true}] : []),
    ...(showing.of > 0 ? [{text: `  (rows ${showing.from}-${showing.to} of ${showing.of})`, color: 'gray' as const}] : []),
    ...(model.rejected > 0 ? [{text: `  ${model.rejected} malformed events dropped`, color: 'yellow' as const}] : []),
  ];
  const totals = useMemo(() => hiveTotals(model), [model.workers, model.now]);
  const held = [...totals.memory]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([device, memory]) => `${device} ${compactBytes(memory.bytes)} (${memory.workers})`)
    .join(' · ');
  const sums: Segment[] = [
    {text: 'totals ', bold: true},
    {text: `${totals.workers} worker${totals.workers === 1 ? '' : 's'} running${totals.busy > 0 ? ` (${totals.busy} busy)` : ''}`},
    {text: ` · ${compactRate(totals.requestsPerSecond)} req/s · ${compactRate(totals.tokensPerSecond)} tok/s`, color: 'cyan'},
    ...(held === '' ? [] : [{text: ` · memory held: ${held}`}]),
  ];
  return (
    <Box flexDirection="column">
      <Line width={width} segments={hive} />
      <Line width={width} segments={devices} muted={!live} />
      <Line width={width} segments={workers} muted={!live} />
      <Line width={width} segments={sums} muted={!live} />
    </Box>
  );
}
