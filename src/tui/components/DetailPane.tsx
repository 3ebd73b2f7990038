/** The selected worker: its record in one line, its last heartbeat as key/values, and its recent log lines. */
import {Box} from 'ink';
import type {Heartbeat} from '../../protocol/wire.js';
import type {LogTail} from '../dashboard-api.js';
import type {Segment} from '../ansi.js';
import {compactAge, compactBytes, fit} from '../format.js';
import {heartbeatAge, staleAfterMs, type WorkerRow} from '../model.js';
import {stateColors} from '../columns.js';
import {Line, TextLine} from './Line.js';

const byteKeys = new Set(['vram_used', 'vram_total', 'ram_used']);

function valueText(key: string, value: unknown): string {
  if (typeof value === 'number' && byteKeys.has(key)) {
    return `${compactBytes(value)} (${value})`;
  }
  if (typeof value === 'string') {
    return value;
  }
  return JSON.stringify(value) ?? String(value);
}

/** The heartbeat's fields in columns (filled top to bottom), at most `lines` lines; a last cell says what did not fit. */
export function heartbeatGrid(heartbeat: Heartbeat, width: number, lines: number): {cellWidth: number; rows: string[][]} {
  const entries = Object.entries(heartbeat).filter(([, value]) => value !== undefined).map(([key, value]) => [key, valueText(key, value)] as const);
  // Columns of at least 40 (the longest key is 28), sharing the width between them, 2 spaces apart.
  const perLine = Math.max(1, Math.floor((width + 2) / 42));
  const cellWidth = Math.max(1, Math.floor((width + 2) / perLine) - 2);
  if (entries.length === 0 || lines <= 0) {
    return {cellWidth, rows: []};
  }
  const capacity = perLine * lines;
  const shown = entries.length > capacity ? [...entries.slice(0, capacity - 1), ['…', `${entries.length - capacity + 1} more fields`] as const] : entries;
  const count = Math.ceil(shown.length / perLine);
  const columns = Array.from({length: perLine}, (_, column) => shown.slice(column * count, (column + 1) * count));
  const keyWidths = columns.map(column => Math.min(28, Math.max(0, ...column.map(([key]) => key.length))));
  const rows = Array.from({length: count}, (_, row) => columns.flatMap((column, index) => {
    const entry = column[row];
    return entry === undefined ? [] : [`${fit(entry[0], keyWidths[index]!)} ${entry[1]}`];
  }));
  return {cellWidth, rows};
}

/** Border, title line, field lines, and with logs a note line and the log lines. */
export function detailPaneHeight(fieldLines: number, logLines: number): number {
  return 2 + 1 + fieldLines + (logLines > 0 ? 1 + logLines : 0);
}

export type DetailPaneProps = {
  row: WorkerRow;
  now: number;
  width: number;
  /** Lines for the heartbeat fields, and for log lines (0: logs hidden). */
  fieldLines: number;
  logLines: number;
  log: LogTail | null;
  pending: string | undefined;
};

export function DetailPane({row, now, width, fieldLines, logLines, log, pending}: DetailPaneProps) {
  const {info} = row;
  const inner = Math.max(10, width - 4);
  const age = heartbeatAge(row, now);
  const interval = row.intervalMs === null ? 'interval not seen yet' : `every ~${(row.intervalMs / 1_000).toFixed(1)}s`;
  const heartbeatLine = age === null
    ? 'no heartbeat yet'
    : `last heartbeat ${compactAge(age)} ago (${interval}; stale after ${Math.round(staleAfterMs(row) / 1_000)}s)`;
  const grid = info.last_heartbeat === null ? {cellWidth: 0, rows: []} : heartbeatGrid(info.last_heartbeat, inner, fieldLines);
  const title: Segment[] = [
    {text: info.worker_id, bold: true},
    {text: ` · ${info.type} · ${info.model} on ${info.device} · `},
    {text: `${info.state}${info.reason === null ? '' : ` (${info.reason})`}`, color: stateColors[info.state]},
    ...(pending === undefined ? [] : [{text: ` · ${pending} requested`, color: 'magenta' as const}]),
    {text: ` · ${heartbeatLine} · pid ${info.pid ?? '-'} · ${info.url} · restarts ${info.restarts} (${info.restart})${info.adopted ? ' · adopted' : ''}${info.draining ? ' · draining' : ''}`, color: 'gray'},
  ];
  return (
    <Box flexDirection="column" borderStyle="round" borderColor="gray" paddingX={1} width={width} height={detailPaneHeight(fieldLines, logLines)}>
      <Line width={inner} segments={title} />
      {grid.rows.length === 0
        ? <TextLine width={inner} text={info.last_heartbeat === null ? 'no heartbeat received yet' : ''} color="gray" />
        : grid.rows.map((cells, row) => (
          <Box key={row} flexDirection="row" columnGap={2}>
            {cells.map((cell, index) => <TextLine key={index} width={grid.cellWidth} text={cell} />)}
          </Box>
        ))}
      {logLines > 0 ? (
        <Box flexDirection="column">
          <TextLine width={inner} text={log === null ? 'log: reading…' : `log: ${log.note}`} color="gray" />
          {(log?.lines ?? []).slice(-logLines).map((line, index) => <TextLine key={index} width={inner} text={line} />)}
        </Box>
      ) : null}
    </Box>
  );
}
