/**
 * The selected worker: its record in one line, what it is doing in sentences, its throughput as a
 * chart in the lines left over, and its recent log lines on demand.
 */
import {Box} from 'ink';
import type {AutoscaleEvent, GroupInfo} from '../../protocol/wire.js';
import type {LogTail} from '../dashboard-api.js';
import type {Segment} from '../ansi.js';
import {describeWorker, throughputChart} from '../describe-worker.js';
import {compactAge, compactRate} from '../format.js';
import {heartbeatAge, shownState, staleAfterMs, type WorkerRow} from '../model.js';
import {stateColors} from '../columns.js';
import {Line, TextLine} from './Line.js';

/** Border, title line, field lines, and with logs a note line and the log lines. */
export function detailPaneHeight(fieldLines: number, logLines: number): number {
  return 2 + 1 + fieldLines + (logLines > 0 ? 1 + logLines : 0);
}

/** Below this many spare lines the chart is left out: a chart two lines tall says nothing. */
const minChartLines = 3;

export type DetailPaneProps = {
  row: WorkerRow;
  now: number;
  width: number;
  /** Lines for the sentences and the chart, and for log lines (0: logs hidden). */
  fieldLines: number;
  logLines: number;
  log: LogTail | null;
  pending: string | undefined;
  deviceMemory: number | undefined;
  group: GroupInfo | undefined;
  restartedFrom: string | undefined;
  decision?: AutoscaleEvent | undefined;
};

/** How many lines the sentences of this worker take, so the layout can give the rest to the table or the chart. */
export function describedLines(row: WorkerRow, context: Pick<DetailPaneProps, 'now' | 'deviceMemory' | 'group' | 'restartedFrom' | 'decision'>): number {
  return describeWorker(row, context).length;
}

export function DetailPane({row, now, width, fieldLines, logLines, log, pending, deviceMemory, group, restartedFrom, decision}: DetailPaneProps) {
  const {info} = row;
  const inner = Math.max(10, width - 4);
  const age = heartbeatAge(row, now);
  const interval = row.intervalMs === null ? 'interval not seen yet' : `every ~${(row.intervalMs / 1_000).toFixed(1)}s`;
  const heartbeatLine =
    age === null ? 'no heartbeat yet' : `last heartbeat ${compactAge(age)} ago (${interval}; stale after ${Math.round(staleAfterMs(row) / 1_000)}s)`;
  const state = shownState(row);
  const title: Segment[] = [
    {text: info.worker_id, bold: true},
    {text: ` · ${info.type} · ${info.model} on ${info.device} · `},
    {text: `${state}${info.reason === null ? '' : ` (${info.reason})`}`, color: stateColors[state]},
    ...(pending === undefined ? [] : [{text: ` · ${pending} requested`, color: 'magenta' as const}]),
    {text: ` · ${heartbeatLine} · pid ${info.pid ?? '-'} · ${info.url}`, color: 'gray'},
  ];
  const sentences = describeWorker(row, {now, deviceMemory, group, restartedFrom, decision}).slice(0, fieldLines);
  const spare = fieldLines - sentences.length;
  const chart = spare >= minChartLines + 1 && row.throughput.length > 1 ? throughputChart(row.throughput, spare - 1, inner) : [];
  const peak = Math.max(0, ...row.throughput);
  return (
    <Box flexDirection="column" borderStyle="round" borderColor="gray" paddingX={1} width={width} height={detailPaneHeight(fieldLines, logLines)}>
      <Line width={inner} segments={title} />
      {sentences.map((sentence, index) => (
        <TextLine key={index} width={inner} text={sentence} />
      ))}
      {chart.length === 0 ? null : (
        <Box flexDirection="column">
          <TextLine width={inner} text={`tokens/s at each of the last ${row.throughput.length} heartbeats (top: ${compactRate(peak)})`} color="gray" />
          {chart.map((line, index) => (
            <TextLine key={index} width={inner} text={line} color="cyan" />
          ))}
        </Box>
      )}
      {logLines > 0 ? (
        <Box flexDirection="column">
          <TextLine width={inner} text={log === null ? 'log: reading…' : `log: ${log.note}`} color="gray" />
          {(log?.lines ?? []).slice(-logLines).map((line, index) => (
            <TextLine key={index} width={inner} text={line} />
          ))}
        </Box>
      ) : null}
    </Box>
  );
}
