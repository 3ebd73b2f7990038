/** One table, two renderings: aligned text for the terminal, pipes for Markdown. */

export type Table = {title: string; header: string[]; rows: string[][]; notes?: string[]};

export function renderText(table: Table): string {
  const widths = table.header.map((cell, column) => Math.max(cell.length, ...table.rows.map(row => (row[column] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0)))
      .join('  ')
      .trimEnd();
  const rule = widths.map(width => '-'.repeat(width)).join('  ');
  return [table.title, line(table.header), rule, ...table.rows.map(line), ...(table.notes ?? []).map(note => `  ${note}`)].join('\n');
}

export function renderMarkdown(table: Table): string {
  const escape = (cell: string) => cell.replaceAll('|', '\\|');
  const line = (cells: string[]) => `| ${cells.map(escape).join(' | ')} |`;
  const align = table.header.map((_cell, column) => (column === 0 ? ':---' : '---:'));
  return [
    `### ${table.title}`,
    '',
    line(table.header),
    `|${align.join('|')}|`,
    ...table.rows.map(line),
    ...(table.notes === undefined || table.notes.length === 0 ? [] : ['', ...table.notes.map(note => `- ${note}`)]),
  ].join('\n');
}

export function fmt(value: number | null | undefined, digits = 1): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits);
}

export function fmtRatio(value: number | null | undefined): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : `${value.toFixed(3)}×`;
}
