/** The hive's live event stream (GET /v1/events, SSE): what dashboards and `status --watch` read. */
import {z} from 'zod';
import {AutoscaleEventSchema} from './catalogue.js';
import {count, id} from './fields.js';
import {GroupInfoSchema} from './groups.js';
import {HeartbeatSchema} from './heartbeat.js';
import {WorkerInfoSchema} from './workers.js';

const at = z.iso.datetime({offset: true});

/** How often the hive's idle event stream carries a keep-alive comment (`: keep-alive`). */
export const eventKeepAliveMs = 2_000;
/** How long a follower waits on a silent event stream before it calls the hive hung: 3 keep-alives. */
export const eventStallMs = 3 * eventKeepAliveMs;

export const HiveEventSchema = z.discriminatedUnion('type', [
  /** First event on every connection: the whole current state, so a client needs nothing else to start. */
  z.object({
    type: z.literal('snapshot'),
    at,
    hive: z.object({url: z.string(), pid: z.number().int(), version: z.string()}),
    workers: z.array(WorkerInfoSchema),
    groups: z.array(GroupInfoSchema).default([]),
  }),
  z.object({type: z.literal('heartbeat'), at, worker_id: id, heartbeat: HeartbeatSchema}),
  /** A worker was spawned, changed state, or is restarting; `worker` is its full current record. */
  z.object({type: z.literal('worker'), at, change: z.enum(['spawned', 'state', 'restarting']), worker: WorkerInfoSchema}),
  /** A group was spawned or its health changed; `group` is its full current record. */
  z.object({type: z.literal('group'), at, change: z.enum(['spawned', 'health']), group: GroupInfoSchema}),
  /**
   * A request the hive routed: `started`, `progress` (streams, at most once a second) and `ended`,
   * with the worker's requests in flight through the hive and the tokens relayed since the last
   * event (counted from the answer: usage figures, or one per streamed event). Sent only while
   * someone follows the stream; lets a dashboard show busy and tok/s as they happen.
   */
  z.object({
    type: z.literal('request'),
    at,
    worker_id: id,
    phase: z.enum(['started', 'progress', 'ended']),
    in_flight: count,
    tokens: count.optional(),
    duration_ms: count.optional(),
    status: z.number().int().optional(),
  }),
  AutoscaleEventSchema,
]);
export type HiveEvent = z.infer<typeof HiveEventSchema>;
