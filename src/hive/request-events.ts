/**
 * The hive's `request` events: what it sees of the requests it routes, for dashboards. Tokens are
 * counted from what is relayed anyway — a whole answer's usage figures, or one per token event of
 * a stream (a byte search, no parsing) — for the hive's per-worker tally; the events themselves are
 * built only while someone follows the event stream.
 */
import type {HiveEvent} from '../protocol/wire.js';

export type RequestEvent = Extract<HiveEvent, {type: 'request'}>;

export type RequestEventSink = {
  /** Whether anyone follows the event stream now. */
  active: () => boolean;
  publish: (event: RequestEvent) => void;
};

/** What marks one generated piece in each route's stream, as the worker serializes it. */
const tokenMarks: Record<string, Buffer> = {
  '/v1/infer': Buffer.from('"type":"token"'),
  '/v1/chat/completions': Buffer.from('"delta":{"content":'),
  '/v1/completions': Buffer.from('"text":'),
};

/** Token events in one relayed chunk (a mark cut by a chunk boundary is missed: an estimate). */
export function streamTokens(path: string, chunk: Uint8Array): number {
  const mark = tokenMarks[path];
  if (mark === undefined) {
    return 0;
  }
  const buffer = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  let found = 0;
  for (let at = buffer.indexOf(mark); at !== -1; at = buffer.indexOf(mark, at + mark.length)) {
    found++;
  }
  return found;
}

/** Tokens a whole (not streamed) answer reports: rbee's `tokens_generated` or OpenAI's `usage.completion_tokens`. */
export function answerTokens(text: string): number {
  try {
    const body = JSON.parse(text) as {tokens_generated?: unknown; usage?: {completion_tokens?: unknown}};
    const tokens = body.tokens_generated ?? body.usage?.completion_tokens;
    return typeof tokens === 'number' && Number.isInteger(tokens) && tokens >= 0 ? tokens : 0;
  } catch {
    return 0;
  }
}
