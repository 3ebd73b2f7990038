/**
 * The one Server-Sent Events reader: turns a response body into events as the SSE standard
 * (WHATWG HTML, "server-sent events") parses them, so every client of a stream — the hive client,
 * the benchmarks, an adapter reading its engine — splits lines and joins `data:` alike. Exported
 * from `rbee/protocol`; imports nothing.
 */

export type SseEvent = {
  /** The `event:` field; "message" when the event has none. */
  event: string;
  /** The `data:` lines, joined with "\n". */
  data: string;
  /** The last `id:` seen on the stream, if any. */
  id: string | undefined;
  /**
   * Fields the standard does not define, by name, last value wins. Kept because some engines use
   * one to fail a stream whose headers already went out (llama-server writes `error: {…}`).
   */
  extra: Record<string, string>;
};

/**
 * The SSE parser, fed chunk by chunk: `push` returns the events each chunk completes, `end` those the
 * stream's end completes. For a reader that takes a stream's chunks as they come (an adapter
 * relaying its engine's tokens) without a promise per chunk.
 */
export class SseParser {
  readonly #decoder = new TextDecoder();
  #buffer = '';
  #lastId: string | undefined;
  #data: string[] = [];
  #event = '';
  #extra: Record<string, string> = {};

  push(chunk: Uint8Array): SseEvent[] {
    this.#buffer += this.#decoder.decode(chunk, {stream: true});
    return this.#drain(false);
  }

  /** The stream ended: what its last bytes complete (an event cut off without its blank line is dropped). */
  end(): SseEvent[] {
    this.#buffer += this.#decoder.decode();
    return this.#drain(true);
  }

  /** Splits off the buffer's complete lines, passing each to `#take`; returns the events they completed. */
  #drain(final: boolean): SseEvent[] {
    const complete: SseEvent[] = [];
    const buffer = this.#buffer;
    let start = 0;
    if (!buffer.includes('\r')) {
      // The usual stream ends its lines with "\n" alone: the native search, not a loop over characters.
      for (let end = buffer.indexOf('\n'); end !== -1; end = buffer.indexOf('\n', start)) {
        this.#take(buffer.slice(start, end), complete);
        start = end + 1;
      }
      this.#buffer = buffer.slice(start);
      return complete;
    }
    for (let index = 0; index < buffer.length; index++) {
      const char = buffer.charCodeAt(index);
      if (char !== 10 && char !== 13) {
        continue;
      }
      // A "\r" at the very end may be the first half of "\r\n": wait for the next chunk.
      if (char === 13 && index === buffer.length - 1 && !final) {
        break;
      }
      this.#take(buffer.slice(start, index), complete);
      if (char === 13 && buffer.charCodeAt(index + 1) === 10) {
        index++;
      }
      start = index + 1;
    }
    this.#buffer = buffer.slice(start);
    return complete;
  }

  #take(line: string, complete: SseEvent[]): void {
    if (line === '') {
      if (this.#data.length > 0 || Object.keys(this.#extra).length > 0) {
        complete.push({event: this.#event === '' ? 'message' : this.#event, data: this.#data.join('\n'), id: this.#lastId, extra: this.#extra});
      }
      this.#data = [];
      this.#event = '';
      this.#extra = {};
      return;
    }
    if (line.startsWith(':')) {
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) {
      value = value.slice(1);
    }
    if (field === 'data') {
      this.#data.push(value);
    } else if (field === 'event') {
      this.#event = value;
    } else if (field === 'id') {
      if (!value.includes('\0')) {
        this.#lastId = value;
      }
    } else if (field !== 'retry') {
      this.#extra[field] = value;
    }
  }
}

/**
 * Yields each event of `body` as its closing blank line arrives. Comments (`: keep-alive`) yield
 * nothing. An event cut off by the end of the stream is dropped, as the standard says: the caller
 * decides whether a stream without its end marker is complete. Breaking out of the loop cancels
 * the body.
 */
export async function* readSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseEvent, void, undefined> {
  const parser = new SseParser();
  for await (const chunk of body) {
    yield* parser.push(chunk);
  }
  yield* parser.end();
}
