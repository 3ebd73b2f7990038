/**
 * A local workaround for ink's full-frame cost (ink 6.x). Every frame, ink's Output.get builds
 * the whole screen anew: a cell object per column of every line, each line written tokenised into
 * per-character styled objects, and every line turned back into a string character by character,
 * comparing styles at each one (3 Sets per character). At 160 × 40 that is ~6,400 cells a frame,
 * most of the dashboard's CPU, although from one frame to the next only the rows whose worker
 * heartbeated or whose ages ticked differ.
 *
 * So: a screen row's text depends only on what was written on that row (each write's column and
 * transformed text, in order) and the width. A row written exactly as in the previous frame reuses
 * that frame's string. A changed row whose writes sit apart (an unwritten column between each, as
 * the table's cells do) is joined from its writes' strings: ink turns a row into text character by
 * character, emitting style changes between neighbours, so across an unwritten (unstyled) column
 * the text of the row is the texts of its parts end to end. Each write's text is made by ink's
 * own Output.get once and kept while the next frame still writes it: a heartbeat changes a few
 * cells of its row, not the row. Any other row is built by ink's Output.get on a one-row Output.
 * Either way it is the string ink would have made. Frames with clipping (overflow: hidden, not used
 * by the dashboard) or a transformed line holding a newline go to ink's Output.get whole.
 *
 * ink does not export Output: it is reached by its file next to ink's entry point, which is the
 * module ink itself uses. If it is not there or not shaped as expected (another ink version),
 * nothing is changed and ink draws as before, only slower; test/tui/ink-row-cache.test.ts fails then.
 */
import {createRequire} from 'node:module';
import {pathToFileURL} from 'node:url';

type Transformer = (line: string, index: number) => string;
type Operation = {type: 'write'; x: number; y: number; text: string; transformers: Transformer[]} | {type: 'clip' | 'unclip'};
type Frame = {output: string; height: number};

/** ink's per-Output caches of string widths and styled characters (ink's own, or absent in another version). */
type InkCaches = {getStyledChars(line: string): ReadonlyArray<{value: string}>; getStringWidth(text: string): number};

/** The part of ink's (internal) Output class this relies on. */
export type InkOutput = {
  width: number;
  height: number;
  operations: Operation[];
  caches?: InkCaches;
  write(x: number, y: number, text: string, options: {transformers: Transformer[]}): void;
  get(): Frame;
};
export type InkOutputClass = {new (options: {width: number; height: number}): InkOutput; prototype: InkOutput};

type Placed = {x: number; line: string};

/** The lines each row of the frame receives, as ink's Output.get places them; null: ink must handle this frame itself. */
function placedRows(output: InkOutput): Placed[][] | null {
  const rows: Placed[][] = Array.from({length: output.height}, () => []);
  for (const operation of output.operations) {
    if (operation.type !== 'write') {
      return null;
    }
    const lines = operation.text.split('\n');
    for (const [index, text] of lines.entries()) {
      // As in ink: lines go on successive rows from y; from the first row outside the frame on, none is placed.
      const row = rows[operation.y + index];
      if (row === undefined) {
        break;
      }
      let line = text;
      for (const transformer of operation.transformers) {
        line = transformer(line, index);
      }
      if (line.includes('\n')) {
        return null;
      }
      row.push({x: operation.x, line});
    }
  }
  return rows;
}

/** What a row was written with, unambiguously (lengths before texts). */
function rowKey(placed: readonly Placed[]): string {
  let key = '';
  for (const {x, line} of placed) {
    key += `${x},${line.length},${line}`;
  }
  return key;
}

/** A write's text as ink turns it into a row's text, and the columns ink places it over. */
type Piece = {text: string; columns: number};

/**
 * A write on its own as ink renders it: placed at column 0 of a row just wide enough, followed by
 * an unstyled sentinel so that ink's trimming of the row's end leaves the write's own text whole.
 * Null when ink's Output lacks what this needs (another ink version): rows are then built whole.
 */
function renderPiece(Output: InkOutputClass, inkGet: (this: InkOutput) => Frame, line: string): Piece | null {
  // Wide enough for any line: a UTF-16 unit is at most two columns. Its own caches tokenise the line once for both uses.
  const single = new Output({width: 2 * line.length + sentinel.length, height: 1});
  const caches = single.caches;
  if (caches === undefined || typeof caches.getStyledChars !== 'function' || typeof caches.getStringWidth !== 'function') {
    return null;
  }
  // Ink's placement: each character at least one column wide, a wide one its width.
  let columns = 0;
  for (const character of caches.getStyledChars(line)) {
    columns += Math.max(1, caches.getStringWidth(character.value));
  }
  single.write(0, 0, line, {transformers: []});
  single.write(columns, 0, sentinel, {transformers: []});
  const {output} = inkGet.call(single);
  return output.endsWith(sentinel) ? {text: output.slice(0, -sentinel.length), columns} : null;
}

const sentinel = '|';
/** Pieces a generation holds: a 160 × 40 dashboard writes ~500 distinct ones a frame, a few dozen new a frame after. */
const piecesKept = 4_096;

/** Output.get over ink's own, reusing the previous frame's string for every row written as before. */
export function rowCachedGet(Output: InkOutputClass, inkGet: (this: InkOutput) => Frame): (this: InkOutput) => Frame {
  let width = Number.NaN;
  // Only the rows of the last frame are kept: the cache stays one screen big however long it runs.
  let previous = new Map<string, string>();
  // Pieces are asked for only when their row changed, so they are kept by generation, not by frame:
  // a generation ends when it holds `piecesKept`; one not asked for over a whole generation goes.
  let previousPieces = new Map<string, Piece | null>();
  let currentPieces = new Map<string, Piece | null>();

  const piece = (line: string): Piece | null => {
    let found = currentPieces.get(line);
    if (found === undefined) {
      found = previousPieces.get(line);
      if (found === undefined) {
        found = renderPiece(Output, inkGet, line);
      }
      currentPieces.set(line, found);
    }
    return found;
  };

  /** The row joined from its writes' texts, or null when they touch or overlap or leave the row. */
  const joined = (placed: readonly Placed[], rowWidth: number): string | null => {
    let text = '';
    let end = 0;
    for (const [index, {x, line}] of placed.entries()) {
      const part = piece(line);
      // An unwritten column before each write but the first (ink's styles reset there), none past the row's end.
      if (part === null || x < 0 || (index > 0 && x <= end) || x + part.columns > rowWidth) {
        return null;
      }
      text += ' '.repeat(x - end) + part.text;
      end = x + part.columns;
    }
    return text.trimEnd();
  };

  const built = (placed: readonly Placed[], rowWidth: number): string => {
    const fast = joined(placed, rowWidth);
    if (fast !== null) {
      return fast;
    }
    const single = new Output({width: rowWidth, height: 1});
    for (const {x, line: text} of placed) {
      single.write(x, 0, text, {transformers: []});
    }
    return inkGet.call(single).output;
  };

  return function get(this: InkOutput): Frame {
    const rows = placedRows(this);
    if (rows === null) {
      return inkGet.call(this);
    }
    if (this.width !== width) {
      width = this.width;
      previous = new Map();
      previousPieces = new Map();
      currentPieces = new Map();
    }
    const current = new Map<string, string>();
    const lines = rows.map(placed => {
      const key = rowKey(placed);
      let line = current.get(key) ?? previous.get(key);
      if (line === undefined) {
        line = built(placed, this.width);
      }
      current.set(key, line);
      return line;
    });
    previous = current;
    if (currentPieces.size > piecesKept) {
      previousPieces = currentPieces;
      currentPieces = new Map();
    }
    return {output: lines.join('\n'), height: this.height};
  };
}

function looksLikeInkOutput(value: unknown): value is InkOutputClass {
  if (
    typeof value !== 'function' ||
    typeof (value as InkOutputClass).prototype?.get !== 'function' ||
    typeof (value as InkOutputClass).prototype.write !== 'function'
  ) {
    return false;
  }
  const probe = new (value as InkOutputClass)({width: 3, height: 1});
  return Array.isArray(probe.operations) && probe.width === 3 && probe.height === 1;
}

const installed = Symbol.for('rbee.inkRowCache');

/** ink's Output class, as ink itself loads it, or null when it cannot be found. */
export async function inkOutputClass(): Promise<InkOutputClass | null> {
  try {
    const entry = pathToFileURL(createRequire(import.meta.url).resolve('ink'));
    const module = (await import(new URL('output.js', entry).href)) as {default?: unknown};
    return looksLikeInkOutput(module.default) ? module.default : null;
  } catch {
    return null;
  }
}

/** Puts the row cache into ink's Output (once per process); whether it is in place. */
export async function installInkRowCache(): Promise<boolean> {
  const Output = await inkOutputClass();
  if (Output === null) {
    return false;
  }
  const prototype = Output.prototype as InkOutput & {[installed]?: true};
  if (prototype[installed] !== true) {
    prototype.get = rowCachedGet(Output, prototype.get);
    prototype[installed] = true;
  }
  return true;
}
