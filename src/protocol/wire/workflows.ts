/**
 * Workflows: a graph of nodes run by a workflow worker (ComfyUI), submitted through the hive
 * (POST /v1/workflows), followed as SSE progress events, its output files fetched through the hive.
 * The graph is ComfyUI's API format: node ids to `{class_type, inputs}`; the engine validates the
 * graph itself (which nodes exist, which inputs they take) and its error comes back naming the node.
 */
import {z} from 'zod';
import {count, id} from './fields.js';

export const WorkflowNodeSchema = z.looseObject({
  class_type: z.string().min(1),
  inputs: z.record(z.string(), z.unknown()),
});

export const WorkflowGraphSchema = z
  .record(z.string().min(1).max(64), WorkflowNodeSchema)
  .refine(graph => Object.keys(graph).length > 0, 'a workflow needs at least one node');
export type WorkflowGraph = z.infer<typeof WorkflowGraphSchema>;

export const WorkflowRequestSchema = z.strictObject({
  /** The workflow in ComfyUI's API format ("Save (API Format)" in its UI). */
  workflow: WorkflowGraphSchema,
  /** Run it on this worker (default: the least busy ready workflow worker). */
  worker_id: id.optional(),
});
export type WorkflowRequest = z.infer<typeof WorkflowRequestSchema>;

/** What the hive sends the worker: the request with the id the hive gave the workflow. */
export const WorkerWorkflowRequestSchema = z.strictObject({
  workflow_id: id,
  workflow: WorkflowGraphSchema,
});
export type WorkerWorkflowRequest = z.infer<typeof WorkerWorkflowRequestSchema>;

/** A file a node wrote, as ComfyUI names it: fetched through GET /v1/workflows/:id/outputs/<type>/<subfolder>/<filename>. */
export const WorkflowOutputFileSchema = z.object({
  node: z.string(),
  filename: z.string().min(1),
  subfolder: z.string(),
  type: z.enum(['output', 'temp', 'input']),
  /** Its path under the hive, e.g. /v1/workflows/wf-1/outputs/output/rbee_00001_.png. */
  url: z.string().min(1),
});
export type WorkflowOutputFile = z.infer<typeof WorkflowOutputFileSchema>;

const at = z.iso.datetime({offset: true});

/** One SSE event of a workflow; the stream ends with `done` or `error`. */
export const WorkflowEventSchema = z.discriminatedUnion('type', [
  z.object({type: z.literal('queued'), workflow_id: id, worker_id: id, prompt_id: z.string().min(1), queue_position: count, at}),
  z.object({type: z.literal('executing'), workflow_id: id, node: z.string(), class_type: z.string().nullable(), at}),
  z.object({type: z.literal('cached'), workflow_id: id, nodes: z.array(z.string()), at}),
  z.object({type: z.literal('progress'), workflow_id: id, node: z.string().nullable(), value: z.number().nonnegative(), max: z.number().positive(), at}),
  z.object({type: z.literal('executed'), workflow_id: id, node: z.string(), outputs: z.array(WorkflowOutputFileSchema), at}),
  z.object({type: z.literal('done'), workflow_id: id, outputs: z.array(WorkflowOutputFileSchema), duration_ms: count, at}),
  z.object({
    type: z.literal('error'),
    workflow_id: id.optional(),
    error: z.object({code: z.string(), message: z.string(), node: z.string().optional()}),
  }),
]);
export type WorkflowEvent = z.infer<typeof WorkflowEventSchema>;

/** DELETE /v1/workflows/:id */
export const WorkflowCancelResponseSchema = z.object({
  workflow_id: id,
  /** `interrupted`: it was running; `dequeued`: it was waiting in the engine's queue; `finished`: nothing left to stop. */
  result: z.enum(['interrupted', 'dequeued', 'finished']),
});
export type WorkflowCancelResponse = z.infer<typeof WorkflowCancelResponseSchema>;

/**
 * An output's path below /outputs/: `<type>/<subfolder…>/<filename>`, each segment a plain name.
 * No `..`, no `.`, no empty segment, no backslash or NUL: the engine resolves it inside its own
 * output folder, and the hive never lets a client name anything else.
 */
export function parseOutputPath(relative: string): {type: 'output' | 'temp' | 'input'; subfolder: string; filename: string} | null {
  const segments = relative.split('/');
  if (segments.length < 2 || segments.length > 8) {
    return null;
  }
  const plain = (segment: string) => segment !== '' && segment !== '.' && segment !== '..' && !/[\\\0]/.test(segment) && segment.length <= 255;
  if (!segments.every(plain)) {
    return null;
  }
  const [type, ...rest] = segments;
  if (type !== 'output' && type !== 'temp') {
    return null;
  }
  const filename = rest.pop()!;
  return {type, subfolder: rest.join('/'), filename};
}

/** The inverse of parseOutputPath: where the hive serves a file a node wrote. */
export function outputUrl(workflowId: string, file: {type: string; subfolder: string; filename: string}): string {
  const parts = [file.type, ...file.subfolder.split('/').filter(part => part !== ''), file.filename];
  return `/v1/workflows/${encodeURIComponent(workflowId)}/outputs/${parts.map(encodeURIComponent).join('/')}`;
}
