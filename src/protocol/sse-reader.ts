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
 * Yields each event of `body` as its closing blank line arrives. Comments (`: keep-alive`) yield
 * nothing. An event cut off by the end of the stream is dropped, as the standard says: the caller
 * decides whether a stream without its end marker is complete. Breaking out of the loop cancels
 * the body.
 */
export async function* readSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseEvent, void, undefined> {
  const decoder = new TextDecoder();
  let buffer = '';
  let lastId: string | undefined;
  let data: string[] = [];
  let event = '';
  let extra: Record<string, string> = {};

  /** Splits off the buffer's complete lines, passing each to `take`; returns the events they completed. */
  function drain(final: boolean): SseEvent[] {
    const complete: SseEvent[] = [];
    const line = (text: string) => {
      const event = take(text);
      if (event !== undefined) {
        complete.push(event);
      }
    };
    let start = 0;
    if (!buffer.includes('\r')) {
      // The usual stream ends its lines with "\n" alone: the native search, not a loop over characters.
      for (let end = buffer.indexOf('\n'); end !== -1; end = buffer.indexOf('\n', start)) {
        line(buffer.slice(start, end));
        start = end + 1;
      }
      buffer = buffer.slice(start);
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
      line(buffer.slice(start, index));
      if (char === 13 && buffer.charCodeAt(index + 1) === 10) {
        index++;
      }
      start = index + 1;
    }
    buffer = buffer.slice(start);
    return complete;
  }

  function take(line: string): SseEvent | undefined {
    if (line === '') {
      const hasExtra = Object.keys(extra).length > 0;
      const dispatched = data.length > 0 || hasExtra ? {event: event === '' ? 'message' : event, data: data.join('\n'), id: lastId, extra} : undefined;
      data = [];
      event = '';
      extra = {};
      return dispatched;
    }
    if (line.startsWith(':')) {
      return undefined;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) {
      value = value.slice(1);
    }
    if (field === 'data') {
      data.push(value);
    } else if (field === 'event') {
      event = value;
    } else if (field === 'id') {
      if (!value.includes('\0')) {
        lastId = value;
      }
    } else if (field !== 'retry') {
      extra[field] = value;
    }
    return undefined;
  }

  for await (const chunk of body) {
    buffer += decoder.decode(chunk, {stream: true});
    for (const event of drain(false)) {
      yield event;
    }
  }
  buffer += decoder.decode();
  for (const event of drain(true)) {
    yield event;
  }
}
