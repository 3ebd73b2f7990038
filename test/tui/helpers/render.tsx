/**
 * The one render helper of the TUI tests: ink-testing-library's render, with a terminal size that
 * can change (resize), named keys, and a wait for a frame that matches.
 */
import {render as inkRender} from 'ink-testing-library';
import type {ReactElement} from 'react';

const keys = {
  up: '\u001B[A',
  down: '\u001B[B',
  pageUp: '\u001B[5~',
  pageDown: '\u001B[6~',
  escape: '\u001B',
  enter: '\r',
  backspace: '\u007F',
} as const;

export type KeyName = keyof typeof keys;

export type RenderedTui = ReturnType<typeof inkRender> & {
  /** The last frame, '' before the first. */
  frame(): string;
  resize(columns: number, rows: number): void;
  /** Sends a named key, or text as typed. */
  press(key: KeyName | (string & {})): void;
  waitForFrame(match: RegExp | ((frame: string) => boolean), timeoutMs?: number): Promise<string>;
};

export function renderTui(tree: ReactElement, size: {columns?: number; rows?: number} = {}): RenderedTui {
  const instance = inkRender(tree);
  const resize = (columns: number, rows: number) => {
    Object.defineProperty(instance.stdout, 'columns', {value: columns, configurable: true});
    Object.defineProperty(instance.stdout, 'rows', {value: rows, configurable: true});
    instance.stdout.emit('resize');
  };
  resize(size.columns ?? 120, size.rows ?? 40);
  const frame = () => instance.lastFrame() ?? '';
  return {
    ...instance,
    frame,
    resize,
    press(key) {
      instance.stdin.write(key in keys ? keys[key as KeyName] : key);
    },
    async waitForFrame(match, timeoutMs = 3_000) {
      const test = typeof match === 'function' ? match : (text: string) => match.test(text);
      const deadline = Date.now() + timeoutMs;
      while (!test(frame())) {
        if (Date.now() > deadline) {
          throw new Error(`no frame matched ${String(match)} within ${timeoutMs} ms; last frame:\n${frame()}`);
        }
        await new Promise(resolve => setTimeout(resolve, 10));
      }
      return frame();
    },
  };
}
