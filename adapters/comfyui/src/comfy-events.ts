/**
 * ComfyUI's WebSocket messages, read as rbee workflow events. ComfyUI sends them to the client id
 * a prompt was queued with: `execution_start`, `execution_cached`, `executing` (node null: the
 * prompt is finished), `progress` (value/max of the node running, from comfy.utils.ProgressBar),
 * `executed` (a node's UI output: the files it wrote), `execution_error`, `execution_interrupted`.
 * Pure functions: what is fetched and who is told lives in comfyui-engine.ts.
 */
import {z} from 'zod';
import {RbeeError, outputUrl, type WorkflowEvent, type WorkflowGraph, type WorkflowOutputFile} from 'rbee';

const promptId = z.string().min(1);

export const ComfyMessageSchema = z.discriminatedUnion('type', [
  z.object({type: z.literal('status'), data: z.looseObject({status: z.looseObject({exec_info: z.looseObject({queue_remaining: z.number()})})})}),
  z.object({type: z.literal('execution_start'), data: z.looseObject({prompt_id: promptId})}),
  z.object({type: z.literal('execution_cached'), data: z.looseObject({prompt_id: promptId, nodes: z.array(z.string())})}),
  z.object({type: z.literal('executing'), data: z.looseObject({prompt_id: promptId.optional(), node: z.string().nullable()})}),
  z.object({
    type: z.literal('progress'),
    data: z.looseObject({prompt_id: promptId.nullable().optional(), node: z.string().nullable().optional(), value: z.number(), max: z.number()}),
  }),
  z.object({type: z.literal('executed'), data: z.looseObject({prompt_id: promptId, node: z.string(), output: z.record(z.string(), z.unknown()).nullable()})}),
  z.object({
    type: z.literal('execution_error'),
    data: z.looseObject({
      prompt_id: promptId,
      node_id: z.string(),
      node_type: z.string(),
      exception_message: z.string(),
      exception_type: z.string().optional(),
    }),
  }),
  z.object({
    type: z.literal('execution_interrupted'),
    data: z.looseObject({prompt_id: promptId, node_id: z.string().nullable(), node_type: z.string().nullable()}),
  }),
]);
export type ComfyMessage = z.infer<typeof ComfyMessageSchema>;

/** A message ComfyUI sent as text: parsed, or null for one rbee does not follow (crystools, previews, a newer message). */
export function parseComfyMessage(text: string): ComfyMessage | null {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = ComfyMessageSchema.safeParse(json);
  return parsed.success ? parsed.data : null;
}

/** The prompt a message belongs to, when it names one. */
export function messagePromptId(message: ComfyMessage): string | null {
  return 'prompt_id' in message.data && typeof message.data.prompt_id === 'string' ? message.data.prompt_id : null;
}

const FileSchema = z.object({filename: z.string().min(1), subfolder: z.string().default(''), type: z.enum(['output', 'temp', 'input'])});

/** The files a node's UI output names (`images`, `gifs`, … : any list of {filename, subfolder, type}). */
export function outputFiles(workflowId: string, node: string, output: Record<string, unknown> | null): WorkflowOutputFile[] {
  const files: WorkflowOutputFile[] = [];
  for (const value of Object.values(output ?? {})) {
    for (const item of Array.isArray(value) ? value : []) {
      const file = FileSchema.safeParse(item);
      if (file.success) {
        files.push({node, ...file.data, url: outputUrl(workflowId, file.data)});
      }
    }
  }
  return files;
}

export type PromptOutcome = {kind: 'finished'} | {kind: 'failed'; error: RbeeError} | null;

/**
 * One message of a prompt as the rbee event to send (or null), and whether the prompt ended.
 * `workflow` supplies each node's class for `executing` events.
 */
export function translate(message: ComfyMessage, workflowId: string, workflow: WorkflowGraph): {event: WorkflowEvent | null; outcome: PromptOutcome} {
  const at = new Date().toISOString();
  switch (message.type) {
    case 'execution_cached':
      return {event: message.data.nodes.length === 0 ? null : {type: 'cached', workflow_id: workflowId, nodes: message.data.nodes, at}, outcome: null};
    case 'executing': {
      const node = message.data.node;
      if (node === null) {
        return {event: null, outcome: {kind: 'finished'}};
      }
      return {event: {type: 'executing', workflow_id: workflowId, node, class_type: workflow[node]?.class_type ?? null, at}, outcome: null};
    }
    case 'progress':
      if (!(message.data.max > 0) || message.data.value < 0) {
        return {event: null, outcome: null};
      }
      return {
        event: {type: 'progress', workflow_id: workflowId, node: message.data.node ?? null, value: message.data.value, max: message.data.max, at},
        outcome: null,
      };
    case 'executed':
      return {
        event: {
          type: 'executed',
          workflow_id: workflowId,
          node: message.data.node,
          outputs: outputFiles(workflowId, message.data.node, message.data.output),
          at,
        },
        outcome: null,
      };
    case 'execution_error':
      return {
        event: null,
        outcome: {
          kind: 'failed',
          error: new RbeeError(
            'engine_error',
            `node ${message.data.node_id} (${message.data.node_type}) failed: ${message.data.exception_type === undefined ? '' : `${message.data.exception_type}: `}${message.data.exception_message.trim()}`,
            {field: message.data.node_id},
          ),
        },
      };
    case 'execution_interrupted':
      return {
        event: null,
        outcome: {
          kind: 'failed',
          error: new RbeeError(
            'engine_error',
            `workflow interrupted${message.data.node_id === null ? '' : ` at node ${message.data.node_id} (${message.data.node_type ?? 'unknown'})`}`,
            message.data.node_id === null ? {} : {field: message.data.node_id},
          ),
        },
      };
    default:
      return {event: null, outcome: null};
  }
}

type NodeError = {errors?: Array<{message?: string; details?: string}>; class_type?: string};
const RefusalSchema = z.looseObject({
  error: z.union([z.looseObject({message: z.string().optional(), details: z.string().optional()}), z.string()]).optional(),
  node_errors: z.union([z.record(z.string(), z.unknown()), z.array(z.unknown())]).optional(),
});

/**
 * ComfyUI's answer to a prompt it refuses (POST /prompt, 400: `{error, node_errors}`) as one
 * error naming the node at fault and what is wrong with it.
 */
export function promptRefusal(body: unknown): RbeeError {
  const parsed = RefusalSchema.safeParse(body);
  if (!parsed.success) {
    return new RbeeError('invalid_request', 'ComfyUI refused the workflow without saying why');
  }
  const nodeErrors = Array.isArray(parsed.data.node_errors) ? {} : ((parsed.data.node_errors ?? {}) as Record<string, NodeError>);
  const nodes = Object.entries(nodeErrors);
  const topError = parsed.data.error;
  const top = typeof topError === 'string' ? topError : [topError?.message, topError?.details].filter(part => part !== undefined && part !== '').join(': ');
  if (nodes.length === 0) {
    return new RbeeError('invalid_request', `ComfyUI refused the workflow: ${top === '' ? 'no reason given' : top}`);
  }
  const described = nodes.map(([node, error]) => {
    const reasons = (error.errors ?? []).map(reason => [reason.message, reason.details].filter(part => part !== undefined && part !== '').join(': '));
    return `node ${node} (${error.class_type ?? 'unknown'}): ${reasons.join('; ') || 'invalid'}`;
  });
  return new RbeeError('invalid_request', `ComfyUI refused the workflow: ${described.join('; ')}`, {field: nodes[0]![0]});
}

/** Nodes whose class this ComfyUI does not have: refused before queueing (ComfyUI itself would answer a 500). */
export function unknownNodes(workflow: WorkflowGraph, known: ReadonlySet<string>): RbeeError | null {
  const unknown = Object.entries(workflow).filter(([, node]) => !known.has(node.class_type));
  if (unknown.length === 0) {
    return null;
  }
  const [node, {class_type: classType}] = unknown[0]!;
  return new RbeeError(
    'invalid_request',
    `ComfyUI refused the workflow: node ${node} has class_type "${classType}", which this ComfyUI does not have (a custom node not installed?)`,
    {field: node},
  );
}

/** The model files a workflow's loader nodes name (`ckpt_name`, `vae_name`, `lora_name`, …): ComfyUI keeps them loaded until /free. */
export function modelsNamed(workflow: WorkflowGraph): string[] {
  const names = new Set<string>();
  for (const node of Object.values(workflow)) {
    for (const [input, value] of Object.entries(node.inputs)) {
      if (input.endsWith('_name') && typeof value === 'string' && /\.(safetensors|ckpt|pt|pth|bin|gguf|onnx)$/i.test(value)) {
        names.add(value);
      }
    }
  }
  return [...names];
}
