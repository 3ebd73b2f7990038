/**
 * One line of the dashboard, exactly `width` columns. ink measures a constant placeholder of that
 * width and the line's text is put in its place only when the frame is written (ink's Transform):
 * ink caches every text it has ever measured, without bound, so a line whose text changes every
 * second (ages, rates) would otherwise grow that cache for as long as the dashboard stays open,
 * and a line with bars and sparklines would be measured on ink's slow Unicode path every frame.
 */
import {Transform} from 'ink';
import {createContext, memo, useContext} from 'react';
import {paintLine, type Segment} from '../ansi.js';

/** Whether lines are coloured: the Dashboard sets it from its terminal. */
export const ColorsContext = createContext(false);

const placeholders = new Map<number, string>();
function placeholder(width: number): string {
  let text = placeholders.get(width);
  if (text === undefined) {
    text = ' '.repeat(width);
    placeholders.set(width, text);
  }
  return text;
}

export type LineProps = {
  width: number;
  segments: readonly Segment[];
  muted?: boolean;
  inverse?: boolean;
};

function sameSegments(a: readonly Segment[], b: readonly Segment[]): boolean {
  return (
    a.length === b.length &&
    a.every((segment, index) => {
      const other = b[index]!;
      return segment.text === other.text && segment.color === other.color && segment.bold === other.bold;
    })
  );
}

/** A line re-renders only when what it shows changed: most of a 500-worker table does not, frame to frame. */
export const Line = memo(
  function Line({width, segments, muted = false, inverse = false}: LineProps) {
    const colors = useContext(ColorsContext);
    if (width <= 0) {
      return null;
    }
    const text = paintLine(segments, width, {colors, muted, inverse});
    return <Transform transform={() => text}>{placeholder(width)}</Transform>;
  },
  (before, after) =>
    before.width === after.width && before.muted === after.muted && before.inverse === after.inverse && sameSegments(before.segments, after.segments),
);

/** A line of one segment. */
export function TextLine({width, text, color, bold, muted}: {width: number; text: string; color?: Segment['color']; bold?: boolean; muted?: boolean}) {
  return <Line width={width} segments={[{text, color, bold}]} muted={muted === true} />;
}
