/** The live table: a header line and the visible window of worker (and group) lines. */
import {Box} from 'ink';
import {memo} from 'react';
import {headerCells, lineCells, type CellContext, type Column} from '../columns.js';
import type {Segment} from '../ansi.js';
import type {TableLine} from '../rows.js';
import {Line} from './Line.js';

export type WorkerTableProps = {
  lines: readonly TableLine[];
  columns: readonly Column[];
  width: number;
  /** Index of the first line shown, and how many fit. */
  offset: number;
  height: number;
  selectedId: string | null;
  context: CellContext;
  /** Not connected: the last known state, greyed. */
  muted: boolean;
  /** What to say when there are no lines. */
  empty: string;
};

/** A table line as segments: the selection gutter, then the cells one space apart. */
export function lineSegments(line: TableLine, columns: readonly Column[], context: CellContext, selected: boolean): Segment[] {
  const segments: Segment[] = [{text: selected ? '› ' : '  '}];
  lineCells(line, columns, context).forEach((cell, index) => {
    segments.push(index === 0 ? cell : {...cell, text: ` ${cell.text}`});
  });
  return segments;
}

/**
 * One worker line. Cell by cell, each its own fixed-width ink node, so ink only handles the
 * characters (not the padding between cells) and a cell that did not change is not redrawn by
 * React; the selected line is drawn whole, so its highlight spans the table.
 */
type RowProps = {line: TableLine; columns: readonly Column[]; context: CellContext; selected: boolean; muted: boolean; width: number};

function sameLine(a: TableLine, b: TableLine): boolean {
  if (a.kind === 'worker' && b.kind === 'worker') {
    return a.row === b.row && a.branch === b.branch;
  }
  return (
    a.kind === 'group' &&
    b.kind === 'group' &&
    a.groupId === b.groupId &&
    a.health === b.health &&
    a.reason === b.reason &&
    a.coordinator === b.coordinator &&
    a.shards === b.shards
  );
}

/** A row is drawn again when its worker changed, or a second passed (its ages), or the layout did. */
const Row = memo(
  function Row({line, columns, context, selected, muted, width}: RowProps) {
    if (selected || line.kind === 'group') {
      return <Line width={width} segments={lineSegments(line, columns, context, selected)} inverse={selected} muted={muted} />;
    }
    const cells = lineCells(line, columns, context);
    return (
      <Box flexDirection="row" columnGap={1} paddingLeft={2} width={width}>
        {columns.map((column, index) => (
          <Line key={column.key} width={column.width} segments={[cells[index]!]} muted={muted} />
        ))}
      </Box>
    );
  },
  (before, after) =>
    sameLine(before.line, after.line) &&
    before.selected === after.selected &&
    before.muted === after.muted &&
    before.width === after.width &&
    before.columns === after.columns &&
    before.context.devices === after.context.devices &&
    Math.floor(before.context.now / 1_000) === Math.floor(after.context.now / 1_000),
);

export function WorkerTable({lines, columns, width, offset, height, selectedId, context, muted, empty}: WorkerTableProps) {
  const shown = lines.slice(offset, offset + height);
  return (
    <Box flexDirection="column" height={height + 1}>
      <Line width={width} segments={[{text: `  ${headerCells(columns)}`, bold: true}]} muted={muted} />
      {shown.length === 0 ? (
        <Line width={width} segments={[{text: `  ${empty}`, color: 'yellow'}]} muted={muted} />
      ) : (
        shown.map(line => {
          const key = line.kind === 'worker' ? line.row.info.worker_id : `group:${line.groupId}`;
          const selected = line.kind === 'worker' && line.row.info.worker_id === selectedId;
          return (
            <Row
              key={key}
              line={line}
              columns={columns}
              context={context}
              selected={selected}
              muted={muted || (line.kind === 'worker' && line.row.history)}
              width={width}
            />
          );
        })
      )}
    </Box>
  );
}
