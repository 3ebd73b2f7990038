/**
 * Whole lines out of a byte stream that arrives in arbitrary chunks: a pipe cuts an engine's
 * output wherever its buffer ends, mid-line and mid-character. A line longer than `maxLineBytes`
 * (an engine printing a progress bar without newlines) is passed on in pieces rather than held.
 */
import {StringDecoder} from 'node:string_decoder';

export type LineSplitter = {
  push(chunk: Buffer): void;
  /** The last line, when the stream ended without a newline. */
  end(): void;
};

export function lineSplitter(onLine: (line: string) => void, maxLineBytes = 64 * 1024): LineSplitter {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  const emit = (line: string) => {
    const trimmed = line.endsWith('\r') ? line.slice(0, -1) : line;
    if (trimmed.trim() !== '') {
      onLine(trimmed);
    }
  };
  const take = (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      emit(line);
    }
    if (partial.length > maxLineBytes) {
      emit(partial);
      partial = '';
    }
  };
  return {
    push(chunk) {
      take(decoder.write(chunk));
    },
    end() {
      take(decoder.end());
      emit(partial);
      partial = '';
    },
  };
}
