/**
 * Whether a relayed SSE stream ended with its end marker. Only the start of the latest event is
 * kept (a final `done` event carries the whole text, so the stream's tail would not do), read from
 * the raw bytes as they pass: the relay stays a byte copy.
 */
const headLength = 16;
// At a line start only: a newline inside an event's JSON is escaped, so "data: " in generated text never matches.
const marker = Buffer.from('\ndata: ');

export class StreamEndWatch {
  /** The last bytes seen, fewer than the marker's: a marker cut by a chunk boundary is found with the next chunk. The stream's first event has no newline before it. */
  #carry = Buffer.from('\n');
  #head: string | null = null;

  push(chunk: Uint8Array): void {
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // The chunk is searched in place; only the few bytes around its start are joined with the carry.
    const at = bytes.lastIndexOf(marker);
    let begin = at === -1 ? -1 : at + marker.length;
    if (begin === -1) {
      const seam = Buffer.concat([this.#carry, bytes.subarray(0, marker.length - 1)]);
      const inSeam = seam.lastIndexOf(marker);
      // A marker found there ends inside this chunk (the carry is shorter than a marker): its event's head starts there.
      begin = inSeam === -1 ? -1 : inSeam + marker.length - this.#carry.length;
    }
    if (begin !== -1) {
      this.#head = bytes.subarray(begin, begin + headLength).toString('latin1');
    } else if (this.#head !== null && this.#head.length < headLength) {
      this.#head += bytes.subarray(0, headLength - this.#head.length).toString('latin1');
    }
    const keep = marker.length - 1;
    this.#carry = bytes.length >= keep ? Buffer.from(bytes.subarray(bytes.length - keep)) : Buffer.concat([this.#carry, bytes]).subarray(-keep);
  }

  /** rbee's /v1/infer ends with a `done` or `error` event; the OpenAI routes with `[DONE]` or an error object. */
  ended(openAi: boolean): boolean {
    const head = this.#head ?? '';
    return openAi ? head.startsWith('[DONE]') || head.startsWith('{"error"') : head.startsWith('{"type":"done"') || head.startsWith('{"type":"error"');
  }
}
