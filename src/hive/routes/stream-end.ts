/**
 * Whether a relayed SSE stream ended with its end marker. Only the start of the latest event is
 * kept (a final `done` event carries the whole text, so the stream's tail would not do), read from
 * the raw bytes as they pass: the relay stays a byte copy.
 */
const headLength = 16;
// At a line start only: a newline inside an event's JSON is escaped, so "data: " in generated text never matches.
const marker = Buffer.from('\ndata: ');

export class StreamEndWatch {
  /** The stream's first event has no newline before it. */
  #carry = Buffer.from('\n');
  #head: string | null = null;

  push(chunk: Uint8Array): void {
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const joined = this.#carry.length === 0 ? bytes : Buffer.concat([this.#carry, bytes]);
    const at = joined.lastIndexOf(marker);
    if (at !== -1) {
      this.#head = joined.subarray(at + marker.length, at + marker.length + headLength).toString('latin1');
    } else if (this.#head !== null && this.#head.length < headLength) {
      this.#head += bytes.subarray(0, headLength - this.#head.length).toString('latin1');
    }
    // A marker split across chunks is found in the next push.
    this.#carry = Buffer.from(joined.subarray(Math.max(0, joined.length - (marker.length - 1))));
  }

  /** rbee's /v1/infer ends with a `done` or `error` event; the OpenAI routes with `[DONE]` or an error object. */
  ended(openAi: boolean): boolean {
    const head = this.#head ?? '';
    return openAi ? head.startsWith('[DONE]') || head.startsWith('{"error"') : head.startsWith('{"type":"done"') || head.startsWith('{"type":"error"');
  }
}
