/** Small human formatters shared by the commands' text output. */
export {formatBytes} from '../models/progress-bar.js';
export function formatAge(iso: string | null, now = Date.now()): string {
  if (iso === null) {
    return '-';
  }
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000);
  return seconds < 60 ? `${seconds.toFixed(1)}s ago` : `${Math.round(seconds / 60)}m ago`;
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map(row => (row[column] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
