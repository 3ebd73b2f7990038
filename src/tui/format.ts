/** Fixed-width text pieces of the dashboard: bars, sparklines, sizes and durations. Pure, no ink. */

const sparkLevels = '▁▂▃▄▅▆▇█';

/** The last `width` values as a sparkline scaled to their maximum, right-aligned (newest on the right). */
export function sparkline(values: readonly number[], width: number): string {
  if (width <= 0) {
    return '';
  }
  const recent = values.slice(-width);
  const max = Math.max(0, ...recent);
  const marks = recent.map(value => {
    if (max <= 0 || !Number.isFinite(value) || value <= 0) {
      return sparkLevels[0]!;
    }
    const level = Math.min(sparkLevels.length - 1, Math.round((value / max) * (sparkLevels.length - 1)));
    return sparkLevels[level]!;
  });
  return marks.join('').padStart(width, ' ');
}

/** A bar of `width` cells filled to `fraction` (0..1): full blocks, then shade. */
export function bar(fraction: number, width: number): string {
  if (width <= 0) {
    return '';
  }
  const clamped = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const filled = Math.round(clamped * width);
  return '█'.repeat(filled) + '░'.repeat(width - filled);
}

/** Compact sizes for table cells: 512B, 12K, 412M, 15.6G (powers of 1024). */
export function compactBytes(bytes: number): string {
  const units = ['B', 'K', 'M', 'G', 'T'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit >= 3 && value < 100 ? 1 : 0;
  return `${value.toFixed(digits)}${units[unit]}`;
}

/** 42s, 3m12s, 2h03m, 4d02h. */
export function compactDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) {
    return '-';
  }
  const s = Math.floor(seconds);
  if (s < 60) {
    return `${s}s`;
  }
  if (s < 3_600) {
    return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  }
  if (s < 86_400) {
    return `${Math.floor(s / 3_600)}h${String(Math.floor((s % 3_600) / 60)).padStart(2, '0')}m`;
  }
  return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3_600)).padStart(2, '0')}h`;
}

/** Age of a heartbeat: 0.8s, 17s, 4m, 2h. */
export function compactAge(ms: number): string {
  const seconds = Math.max(0, ms) / 1_000;
  if (seconds < 10) {
    return `${seconds.toFixed(1)}s`;
  }
  if (seconds < 60) {
    return `${Math.floor(seconds)}s`;
  }
  if (seconds < 3_600) {
    return `${Math.floor(seconds / 60)}m`;
  }
  return `${Math.floor(seconds / 3_600)}h`;
}

/** Age in whole seconds (0s, 17s), then minutes and hours: a table cell that changes at most once a second. */
export function compactAgeSeconds(ms: number): string {
  const seconds = Math.floor(Math.max(0, ms) / 1_000);
  if (seconds < 60) {
    return `${seconds}s`;
  }
  return seconds < 3_600 ? `${Math.floor(seconds / 60)}m` : `${Math.floor(seconds / 3_600)}h`;
}

/** Tokens per second with at most 5 characters: 0, 7.3, 42.1, 812, 12.4k. */
export function compactRate(value: number): string {
  if (!Number.isFinite(value) || value <= 0) {
    return '0';
  }
  if (value < 100) {
    return value.toFixed(1);
  }
  if (value < 10_000) {
    return String(Math.round(value));
  }
  return `${(value / 1_000).toFixed(1)}k`;
}

const asciiOnly = /^[\u0020-\u007E]*$/;

/** Terminal columns of one code point: 0 for combining marks and joiners, 2 for East Asian wide and emoji, else 1. */
export function charWidth(codePoint: number): number {
  if ((codePoint >= 0x300 && codePoint <= 0x36f) || (codePoint >= 0x200b && codePoint <= 0x200f) || (codePoint >= 0xfe00 && codePoint <= 0xfe0f)) {
    return 0;
  }
  if (
    (codePoint >= 0x1100 && codePoint <= 0x115f) ||
    (codePoint >= 0x2e80 && codePoint <= 0xa4cf && codePoint !== 0x303f) ||
    (codePoint >= 0xac00 && codePoint <= 0xd7a3) ||
    (codePoint >= 0xf900 && codePoint <= 0xfaff) ||
    (codePoint >= 0xfe30 && codePoint <= 0xfe4f) ||
    (codePoint >= 0xff00 && codePoint <= 0xff60) ||
    (codePoint >= 0xffe0 && codePoint <= 0xffe6) ||
    (codePoint >= 0x1f300 && codePoint <= 0x1faff) ||
    (codePoint >= 0x20000 && codePoint <= 0x3fffd)
  ) {
    return 2;
  }
  return 1;
}

/** Terminal columns of a string without escape codes (printable ASCII: its length). */
export function textWidth(text: string): number {
  if (asciiOnly.test(text)) {
    return text.length;
  }
  let width = 0;
  for (const char of text) {
    width += charWidth(char.codePointAt(0)!);
  }
  return width;
}

/** Cuts `text` to `width` columns, marking the cut with an ellipsis. */
export function truncate(text: string, width: number): string {
  if (width <= 0) {
    return '';
  }
  if (asciiOnly.test(text)) {
    return text.length <= width ? text : width === 1 ? '…' : `${text.slice(0, width - 1)}…`;
  }
  if (textWidth(text) <= width) {
    return text;
  }
  let cut = '';
  let used = 0;
  for (const char of text) {
    const next = charWidth(char.codePointAt(0)!);
    if (used + next > width - 1) {
      break;
    }
    cut += char;
    used += next;
  }
  return `${cut}…`;
}

/** Truncated and padded to exactly `width` columns. */
export function fit(text: string, width: number, align: 'left' | 'right' = 'left'): string {
  const cut = truncate(text, width);
  const pad = ' '.repeat(Math.max(0, width - textWidth(cut)));
  return align === 'left' ? cut + pad : pad + cut;
}

/** Control characters and ANSI escapes removed, so a log line cannot move the cursor or recolour the screen. */
export function printable(line: string): string {
  /* eslint-disable no-control-regex -- control characters are what these patterns remove */
  return line
    .replace(/\u001B\[[0-?]*[ -/]*[@-~]/g, '')
    .replace(/\u001B[\]PX^_][^\u0007\u001B]*(\u0007|\u001B\\)?/g, '')
    .replace(/[\u0000-\u0008\u000B-\u001F\u007F]/g, '')
    .replace(/\t/g, '  ');
  /* eslint-enable no-control-regex */
}
