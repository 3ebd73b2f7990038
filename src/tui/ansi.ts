/**
 * Coloured text as plain strings with SGR escape codes, for the dashboard's lines (see
 * components/Line.tsx): each part closes only what it opened, so an inverse line stays inverse
 * across coloured cells.
 */
import {fit} from './format.js';

export type Color = 'red' | 'green' | 'yellow' | 'blue' | 'magenta' | 'cyan' | 'white' | 'gray';

/** One run of text and how it looks. */
export type Segment = {text: string; color?: Color | undefined; bold?: boolean | undefined};

const foreground: Record<Color, number> = {red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, white: 37, gray: 90};

function sgr(open: number, close: number, text: string): string {
  return `\u001B[${open}m${text}\u001B[${close}m`;
}

/**
 * The segments as one line of at most `width` columns (cut with an ellipsis), coloured
 * when `colors` is on. `muted` greys every segment (a stale view); `inverse` marks the selected line.
 */
export function paintLine(segments: readonly Segment[], width: number, options: {colors: boolean; muted?: boolean; inverse?: boolean}): string {
  // Trailing blanks are left to the terminal (ink's frame is blank there already): every character
  // written costs ink work on every frame. The selected line keeps them, so its highlight spans the width.
  const fitted = fit(segments.map(segment => segment.text).join(''), width);
  const plain = options.inverse === true && options.colors ? fitted : fitted.trimEnd();
  if (!options.colors) {
    return plain;
  }
  // Paint segment by segment over the fitted text, so a cut never splits an escape code.
  let painted = '';
  let offset = 0;
  for (const segment of segments) {
    if (offset >= plain.length) {
      break;
    }
    const text = plain.slice(offset, offset + segment.text.length);
    offset += segment.text.length;
    const color = options.muted === true ? 'gray' : segment.color;
    let part = color === undefined ? text : sgr(foreground[color], 39, text);
    if (segment.bold === true && options.muted !== true) {
      part = sgr(1, 22, part);
    }
    painted += part;
  }
  painted += plain.slice(offset);
  return options.inverse === true ? sgr(7, 27, painted) : painted;
}
