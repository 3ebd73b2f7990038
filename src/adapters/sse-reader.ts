/**
 * Server-Sent Events out of a byte stream that arrives in arbitrary chunks: an engine's network
 * writes and the reader's chunks need not line up with its events, lines, or even characters.
 * Follows the WHATWG parsing rules that engines rely on: lines end with LF, CRLF or CR; `data`
 * lines of one event are joined with LF; an event ends at a blank line; `:` lines are comments.
 */
import {StringDecoder} from 'node:string_decoder';

export type SseEvent = {
  /** The `event:` field; "message" when the event names none. */
  event: string;
  data: string;
  id?: string;
};

export type SseReader = {
  push(chunk: Uint8Array): void;
  /**
   * The stream ended. An event not closed by a blank line is dropped, as the SSE rules say: it is
   * what a stream cut off mid-event leaves, and a reader that wants the end marker must not see half of one.
   */
  end(): void;
};

export function sseReader(onEvent: (event: SseEvent) => void): SseReader {
  const decoder = new StringDecoder('utf8');
  let buffer = '';
  let afterCr = false;
  let data: string[] = [];
  let event = '';
  let id: string | undefined;
  let fields = 0;

  const dispatch = () => {
    if (fields > 0 && data.length > 0) {
      onEvent({event: event === '' ? 'message' : event, data: data.join('\n'), ...(id === undefined ? {} : {id})});
    }
    data = [];
    event = '';
    fields = 0;
  };

  const line = (text: string) => {
    if (text === '') {
      dispatch();
      return;
    }
    if (text.startsWith(':')) {
      return;
    }
    const colon = text.indexOf(':');
    const name = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) {
      value = value.slice(1);
    }
    fields++;
    if (name === 'data') {
      data.push(value);
    } else if (name === 'event') {
      event = value;
    } else if (name === 'id' && !value.includes('\0')) {
      id = value;
    }
  };

  const take = (text: string) => {
    if (text === '') {
      return; // a chunk that ended mid-character: nothing decoded yet, and a pending CR still pends
    }
    let start = 0;
    // A CRLF split over two chunks is one line end, not two: the CR ended the line already.
    if (afterCr && text.startsWith('\n')) {
      start = 1;
    }
    afterCr = false;
    for (let index = start; index < text.length; index++) {
      const char = text[index];
      if (char !== '\n' && char !== '\r') {
        continue;
      }
      line(buffer + text.slice(start, index));
      buffer = '';
      if (char === '\r') {
        if (index + 1 === text.length) {
          afterCr = true;
        } else if (text[index + 1] === '\n') {
          index++;
        }
      }
      start = index + 1;
    }
    buffer += text.slice(start);
  };

  return {
    push(chunk) {
      take(decoder.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
    },
    end() {
      take(decoder.end());
      buffer = '';
      data = [];
      fields = 0;
    },
  };
}

/** Reads a whole SSE body (a fetch response's, say), calling `onEvent` for each event as it completes. */
export async function readSse(body: AsyncIterable<Uint8Array>, onEvent: (event: SseEvent) => void): Promise<void> {
  const reader = sseReader(onEvent);
  for await (const chunk of body) {
    reader.push(chunk);
  }
  reader.end();
}
