/**
 * A one-line terminal progress bar for whatever a person waits on: model downloads (bytes), model
 * loads and engine builds (steps). Drawn only on a TTY (a log file should not fill with carriage
 * returns); elsewhere it writes one line per phase.
 */
import type {ModelProgress} from './resolve-model.js';

/** Progress counted in steps rather than bytes: no sizes, no transfer rate. */
export type StepProgress = {phase: 'loading' | 'building'; done: number; total: number | null; unit: 'steps'; detail?: string};
export type BarProgress = ModelProgress | StepProgress;

export type ProgressStream = {write(chunk: string): unknown; isTTY?: boolean; columns?: number};

export type ProgressBarOptions = {
  label: string;
  stream?: ProgressStream;
  /** Injectable clock, for tests. */
  now?: () => number;
};

export type ProgressBar = {
  update(progress: BarProgress): void;
  done(message?: string): void;
};

const redrawIntervalMs = 100;
// Rate over the last few seconds: recent enough to react, long enough not to flicker.
const rateWindowMs = 5_000;

export function createProgressBar(options: ProgressBarOptions): ProgressBar {
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? Date.now;
  const interactive = stream.isTTY === true;
  let phase: BarProgress['phase'] | null = null;
  let samples: {time: number; done: number}[] = [];
  let lastDrawAt = -Infinity;
  let drawn = false;
  let finished = false;

  return {
    update(progress) {
      if (finished) {
        return;
      }
      const time = now();
      const phaseChanged = progress.phase !== phase;
      if (phaseChanged) {
        phase = progress.phase;
        samples = [];
        if (!interactive) {
          const size = progress.total === null || 'unit' in progress ? '' : ` ${formatBytes(progress.total)}`;
          stream.write(`${options.label}: ${progress.phase}${size}\n`);
        }
      }
      samples.push({time, done: progress.done});
      while (samples.length > 2 && time - (samples[0]?.time ?? time) > rateWindowMs) {
        samples.shift();
      }
      if (!interactive) {
        return;
      }
      const complete = progress.total !== null && progress.done >= progress.total;
      if (!phaseChanged && !complete && time - lastDrawAt < redrawIntervalMs) {
        return;
      }
      lastDrawAt = time;
      drawn = true;
      stream.write(`\r${fitLine(renderLine(options.label, progress, rate(samples)), stream.columns)}\x1b[K`);
    },
    done(message) {
      if (finished) {
        return;
      }
      finished = true;
      if (interactive && drawn) {
        stream.write(message === undefined ? '\n' : `\r${message}\x1b[K\n`);
      } else if (message !== undefined) {
        stream.write(`${message}\n`);
      }
    },
  };
}

function rate(samples: {time: number; done: number}[]): number | null {
  const first = samples[0];
  const last = samples[samples.length - 1];
  if (!first || !last || last.time - first.time < 200) {
    return null;
  }
  return ((last.done - first.done) * 1000) / (last.time - first.time);
}

function renderLine(label: string, progress: BarProgress, bytesPerSecond: number | null): string {
  const parts = [label, progress.phase];
  if ('unit' in progress) {
    const fraction = progress.total !== null && progress.total > 0 ? Math.min(1, progress.done / progress.total) : 0;
    const filled = Math.round(fraction * 24);
    return [
      ...parts,
      `[${'#'.repeat(filled)}${'-'.repeat(24 - filled)}]`,
      `${Math.floor(fraction * 100)}%`,
      ...(progress.detail === undefined ? [] : [progress.detail]),
    ].join(' ');
  }
  if (progress.total !== null && progress.total > 0) {
    const fraction = Math.min(1, progress.done / progress.total);
    const width = 24;
    const filled = Math.round(fraction * width);
    parts.push(`[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`, `${Math.floor(fraction * 100)}%`);
    parts.push(`${formatBytes(progress.done)}/${formatBytes(progress.total)}`);
  } else {
    parts.push(formatBytes(progress.done));
  }
  if (bytesPerSecond !== null) {
    parts.push(`${formatBytes(bytesPerSecond)}/s`);
    if (progress.total !== null && bytesPerSecond > 0 && progress.done < progress.total) {
      parts.push(`ETA ${formatDuration((progress.total - progress.done) / bytesPerSecond)}`);
    }
  }
  return parts.join(' ');
}

function fitLine(line: string, columns: number | undefined): string {
  // Writing into the last column makes some terminals wrap, which breaks the `\r` redraw.
  return columns !== undefined && columns > 1 && line.length >= columns ? line.slice(0, columns - 1) : line;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function formatDuration(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = String(total % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${rest}` : `${minutes}:${rest}`;
}
