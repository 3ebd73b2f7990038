/**
 * The dashboard's entry, imported only by `rbee dashboard`'s action: this is where ink and React
 * are loaded, so every other command starts without them.
 */
import {render} from 'ink';
import type {HiveClient} from '../protocol/hive-client.js';
import {Dashboard} from './components/Dashboard.js';
import {hiveDashboardApi} from './dashboard-api.js';
import {installInkRowCache} from './ink-row-cache.js';

/**
 * How ink draws the dashboard (the benchmark renders with the same): at most 30 frames a second.
 * Not ink's incrementalRendering: it cut the terminal output 5x in the benchmark, but in tmux it
 * appended changed lines below the old ones instead of rewriting them (the e2e test caught it).
 */
export const dashboardRenderOptions = {maxFps: 30} as const;

/**
 * What has to be in place before ink draws the dashboard (the benchmark calls it too): ink's frames
 * rebuilt only in the rows that changed (ink-row-cache.ts). Without it ink still draws, at more CPU.
 */
export async function prepareInk(): Promise<void> {
  await installInkRowCache();
}

const enterAlternateScreen = '\u001B[?1049h\u001B[H';
const leaveAlternateScreen = '\u001B[?1049l';

export async function runDashboard(options: {client: HiveClient; home: string}): Promise<void> {
  const api = hiveDashboardApi(options.client, {home: options.home});
  await prepareInk();
  // Its own screen, as top and htop do: the shell's scrollback is left as it was on quit.
  process.stdout.write(enterAlternateScreen);
  const restore = () => process.stdout.write(leaveAlternateScreen);
  process.once('exit', restore);
  const instance = render(<Dashboard api={api} />, {...dashboardRenderOptions, exitOnCtrlC: true, patchConsole: true});
  try {
    await instance.waitUntilExit();
  } finally {
    instance.cleanup();
    process.off('exit', restore);
    restore();
  }
}
