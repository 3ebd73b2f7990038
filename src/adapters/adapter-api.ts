/**
 * The adapter API: how any engine becomes an rbee worker. Built-in adapters use exactly this,
 * so a third-party adapter (an npm package or a file exporting a factory) has the same power.
 *
 * Three words, used one way throughout: an *adapter* is the plugin (this object); the *worker
 * type* is what `--type` names (the adapter's `type`); the *engine* is what the adapter runs
 * (llama.cpp, vLLM, a Rust library in process).
 *
 * An adapter is a typed object from a factory, vite-plugin style:
 *
 *   export default function myEngine(options?: MyOptions) {
 *     const settings = parseAdapterOptions('acme:my-engine', MyOptionsSchema, options);
 *     return defineAdapter({name: 'acme:my-engine', type: 'my-engine', start, ready, infer, heartbeat, stop});
 *   }
 */
import {z} from 'zod';
import {RbeeError} from '../errors.js';
import {parseWire} from '../protocol/parse.js';
import {
  FinishReasonSchema,
  type Heartbeat,
  type WorkflowCancelResponse,
  type WorkflowEvent,
  type WorkflowGraph,
  type WorkflowOutputFile,
} from '../protocol/wire.js';
import type {EngineChatMessage, GenerateResult} from '../worker/engine.js';

export type {EngineChatMessage, GenerateResult} from '../worker/engine.js';

/** One generation, already validated and translated from rbee's or the OpenAI wire format. */
export type AdapterInferRequest = {
  /** `complete`: raw text continuation of `prompt`. `chat`: `messages` through the model's chat template. */
  kind: 'complete' | 'chat';
  /** The `model` the request named, as the client wrote it; absent when it named none. Multi-model engines pick by it. */
  model?: string;
  prompt: string;
  messages: EngineChatMessage[];
  maxTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  seed?: number;
  stop: string[];
  /** Aborted when the client goes away or the worker stops: stop generating and resolve with what you have. */
  signal: AbortSignal;
  /** Call with each piece of text as it is generated (streaming clients see it at once). */
  onText: (text: string) => void;
};

/** One workflow to run (workflow engines: ComfyUI), already validated as a graph of nodes. */
export type AdapterWorkflowRequest = {
  /** The hive's id for it: the one its events and output URLs carry. */
  workflowId: string;
  workflow: WorkflowGraph;
  /** Aborted when the client goes away or the worker stops: cancel it in the engine. */
  signal: AbortSignal;
  /**
   * Call with each progress event as the engine reports it (queued, executing, cached, progress,
   * executed); the worker adds `done` from the result and `error` from a throw.
   */
  onEvent: (event: WorkflowEvent) => void;
};

export type AdapterWorkflowResult = {outputs: WorkflowOutputFile[]};

/** A file a workflow wrote, to relay to the client as it is read. */
export type AdapterWorkflowOutput = {body: ReadableStream<Uint8Array>; contentType: string};

/**
 * Workflow support, for engines that run graphs of nodes rather than text generations. The worker
 * serves POST /v1/workflows (an SSE stream of events), GET /v1/workflows/:id/outputs/… and
 * DELETE /v1/workflows/:id through these, and the hive routes workflows to workers whose adapter has them.
 */
export type AdapterWorkflows = {
  /** Runs one workflow to its end; throws an RbeeError (with `field` naming the node, for a bad graph) when it fails. */
  run: (request: AdapterWorkflowRequest, context: AdapterContext) => Promise<AdapterWorkflowResult>;
  /** Stops a workflow: interrupts it when it runs, takes it out of the engine's queue when it waits. */
  cancel: (workflowId: string, context: AdapterContext) => Promise<WorkflowCancelResponse['result']>;
  /** One output file, named as parsed from a path-safe URL (see parseOutputPath). */
  output: (
    workflowId: string,
    file: {type: 'output' | 'temp' | 'input'; subfolder: string; filename: string},
    context: AdapterContext,
  ) => Promise<AdapterWorkflowOutput>;
};

export type EngineProcessExit = {code: number | null; signal: NodeJS.Signals | null};

/** An engine subprocess started through the context: it lives in the worker's process group and dies with it. */
export type EngineProcess = {
  pid: number;
  exited: Promise<EngineProcessExit>;
  /** The engine's last output lines, for error messages. */
  recentOutput(): string;
  kill(signal?: NodeJS.Signals): void;
};

/** A worker's part in a worker group: one model spread over several devices, one process each. */
export type AdapterGroup = {
  groupId: string;
  /** The coordinator loads the model and serves requests; a shard holds the layers it is sent. */
  role: 'coordinator' | 'shard';
  coordinatorId: string;
  /** Every device of the group, the coordinator's first. */
  devices: string[];
  /** Shard: the `host:port` its engine must listen on for the coordinator. */
  endpoint: string | null;
  /** The member's rank: 0 for the coordinator, i for shard i (-1: the hive named none). */
  rank: number;
  /**
   * A secret shared by this launch of the group's members only (fresh at every group restart), for
   * engines whose ranks connect to each other directly: the coordinator proves it to its shards.
   * Given by environment, never argv; empty when the hive gave none.
   */
  secret: string;
  /** Coordinator: the shards to drive, each an engine endpoint (and its worker, for health). */
  shards: Array<{workerId: string; device: string; endpoint: string}>;
};

export type AdapterContext = {
  workerId: string;
  modelPath: string;
  modelName: string;
  /** cpu | cuda:N | metal */
  device: string;
  contextSize: number;
  threads: number | undefined;
  parallel: number;
  log: (message: string) => void;
  /** A free loopback port, for an engine that serves HTTP. */
  freePort: () => Promise<number>;
  /**
   * A random key for this worker's engine, fresh per worker process. Loopback is not private (any
   * local user can connect), so an engine that serves HTTP binds 127.0.0.1 and demands this key
   * where it can (llama-server: LLAMA_API_KEY, vLLM: VLLM_API_KEY), and the adapter sends it
   * (`Authorization: Bearer`, or `apiKey` of the engine-http helpers). Pass it through `spawnEngine`'s
   * `env`, never its `args`: another user can read any process's arguments.
   */
  engineKey: string;
  /** Starts an engine with an argument array (never a shell); its output goes to the worker's log. */
  spawnEngine: (options: {command: string; args: string[]; env?: Record<string, string>}) => EngineProcess;
  /** Report how far the model load has got (0..1); a load that stops moving is failed by the hive. */
  reportLoadProgress: (fraction: number) => void;
  /**
   * Report that the engine has failed (a subprocess died, say) now rather than at the next heartbeat:
   * the worker reports `error` to the hive at once, and the hive fails it (and its group) without waiting.
   */
  reportFailure: (reason: string) => void;
  /** Set when the worker is a member of a worker group (only for adapters with `groups: true`). */
  group?: AdapterGroup;
};

/** The kind of device a worker runs on: `cpu`, `cuda` (any `cuda:N`) or `metal`. */
export type DeviceBackend = 'cpu' | 'cuda' | 'metal';

export const deviceBackends: readonly DeviceBackend[] = ['cpu', 'cuda', 'metal'];

/** The backend of a device id (`cuda:1` → `cuda`). */
export function deviceBackend(device: string): DeviceBackend {
  if (device.startsWith('cuda:')) {
    return 'cuda';
  }
  return device === 'metal' ? 'metal' : 'cpu';
}

/** How an adapter's engine runs on one device backend. */
export type BackendSupport = {
  /**
   * Set when the engine could run on this backend but cannot on this machine now (its program is
   * not installed, its build lacks the backend): why, and what to do. The hive refuses such a spawn
   * with this text and never picks the type as the default there.
   */
  unavailable?: string;
  /**
   * A measured speed: the engine's place among the engines measured on this backend, 1 the
   * fastest, with the figures that put it there (a bench/results file). The hive's default worker
   * type for a device is the available engine with the lowest rank; unranked ones come after.
   */
  speed?: {rank: number; source: string};
};

/** The device backends an adapter's engine runs on; a backend left out is one it never runs on. */
export type AdapterBackends = Partial<Record<DeviceBackend, BackendSupport>>;

/** What an adapter adds to the worker's heartbeat: memory figures and the enhanced fields it knows. */
export type AdapterHeartbeat = Partial<
  Pick<
    Heartbeat,
    | 'vram_used'
    | 'vram_total'
    | 'ram_used'
    | 'loaded_models'
    | 'vram_allocations'
    | 'available_models'
    | 'model_expires_at'
    | 'batch_size'
    | 'queue_depth'
    | 'throughput_tokens_per_second'
    | 'current_workflow'
    | 'workflow_progress'
    | 'backend'
    | 'threads'
  >
> & {
  /** Set when the engine has failed (crashed, unreachable): the worker reports `error` and the hive fails it. */
  error?: string;
};

export type RbeeAdapter = {
  /** Namespaced, like vite plugins: "rbee:llamacpp", "acme:my-engine". */
  name: string;
  /** The worker type users pick with `rbee worker spawn --type <type>`. */
  type: string;
  /** The engine's name, e.g. "llama.cpp": the heartbeat's `adapter_type` (the spec's field name). Default: `type`. */
  adapterType?: string;
  description?: string;
  /** What `--model` must name for this engine: a GGUF file (the default), a model folder, or either. */
  modelFormat?: 'gguf' | 'directory' | 'any';
  /**
   * The adapter option that names the engine program (or install folder) it runs: `rbee worker
   * spawn --type <type> --engine <path>` sets it for one worker, like `--adapter-option <it>=<path>`.
   * Left out: the type has no engine to choose (`--engine` is refused).
   */
  engineOption?: string;
  /**
   * Whether `--model engine:<name>` may name a model the engine keeps in a store of its own
   * (Ollama's): the adapter then gets `modelName` <name> and an empty `modelPath`, and says itself,
   * failing its start, when the store has no such model. rbee has no file to check or size it by.
   */
  engineModels?: boolean;
  /** Whether it can run as a member of a worker group (`rbee worker spawn-group`): it reads `context.group`. */
  groups?: boolean;
  /**
   * Refuses a group this engine cannot form before any member starts (a model whose shapes do not
   * split over that many devices, say): throw an RbeeError naming what does not fit. The hive answers
   * the spawn-group request with it (a 4xx) and starts nothing.
   */
  checkGroup?: (group: {modelPath: string; devices: string[]}) => Promise<void>;
  /**
   * The device backends its engine runs on, or a function that finds out (asked by the hive when it
   * needs to know, so it may probe what is installed or built). A spawn on a backend left out is
   * refused; an adapter that declares nothing is taken to run anywhere, unranked.
   */
  backends?: AdapterBackends | (() => AdapterBackends | Promise<AdapterBackends>);
  /**
   * How long start plus ready may take in all before the worker gives up (default 10 min); a spawn's
   * `ready_timeout_ms` overrides it. Progress reported with `reportLoadProgress` is judged on its own:
   * a reported load that stops moving fails sooner (the hive's load-stall timeout).
   */
  readyTimeoutMs?: number;
  /** Start the engine (spawn it, or load the model in process). */
  start: (context: AdapterContext) => Promise<void>;
  /** Polled after start until true. Only `context.reportLoadProgress` counts as progress, not engine output. */
  ready?: (context: AdapterContext) => Promise<boolean>;
  infer: (request: AdapterInferRequest, context: AdapterContext) => Promise<GenerateResult>;
  /**
   * The prompt's length in the model's tokens (for chat, at least the messages' own tokens). With it,
   * the worker refuses a prompt its context cannot hold with a 400 before it queues, instead of letting
   * the engine chew on it. Asked only for a prompt long enough to overflow the context at one token
   * per UTF-8 byte (plus a few tokenizer-added ones): a count may never exceed that.
   */
  countTokens?: (prompt: Pick<AdapterInferRequest, 'kind' | 'prompt' | 'messages'>, context: AdapterContext) => Promise<number>;
  heartbeat?: (context: AdapterContext) => Promise<AdapterHeartbeat>;
  /**
   * For a multi-model engine (one whose heartbeat lists `available_models`): free one model's memory
   * when the hive says `unload_model`, and keep serving. Without it, the worker unloads its one model
   * by ending.
   */
  unloadModel?: (model: string, context: AdapterContext) => Promise<void>;
  /** Set by workflow engines: see AdapterWorkflows. */
  workflows?: AdapterWorkflows;
  /** Stop the engine cleanly; the worker's process group is killed afterwards regardless. */
  stop: (context: AdapterContext) => Promise<void>;
};

const hook = z.custom<(...args: never[]) => unknown>(value => typeof value === 'function', 'expected a function');

const BackendSupportSchema = z.strictObject({
  unavailable: z.string().min(1).optional(),
  speed: z.strictObject({rank: z.number().positive().finite(), source: z.string().min(1)}).optional(),
});

export const AdapterBackendsSchema = z.strictObject({
  cpu: BackendSupportSchema.optional(),
  cuda: BackendSupportSchema.optional(),
  metal: BackendSupportSchema.optional(),
});

const AdapterShapeSchema = z.object({
  name: z.string().regex(/^[a-z0-9@][a-z0-9._/-]*:[a-z0-9][a-z0-9._-]*$/, 'a namespaced name like "vendor:engine"'),
  type: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'lowercase letters, digits, ".", "_" or "-"'),
  adapterType: z.string().min(1).optional(),
  description: z.string().optional(),
  modelFormat: z.enum(['gguf', 'directory', 'any']).optional(),
  engineOption: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_-]{0,63}$/, 'an option name: letters, digits, "_" or "-"')
    .optional(),
  engineModels: z.boolean().optional(),
  groups: z.boolean().optional(),
  checkGroup: hook.optional(),
  // A function, or a declaration: checked on its own below, so a bad one is named by its field.
  backends: z.unknown().optional(),
  readyTimeoutMs: z.number().int().min(100).max(86_400_000).optional(),
  start: hook,
  ready: hook.optional(),
  infer: hook,
  countTokens: hook.optional(),
  heartbeat: hook.optional(),
  unloadModel: hook.optional(),
  workflows: z.object({run: hook, cancel: hook, output: hook}).optional(),
  stop: hook,
});

/** Checks a value is an adapter; the error names the plugin (`source`) and the wrong field. */
export function assertAdapter(value: unknown, source: string): RbeeAdapter {
  const parsed = parseWire(AdapterShapeSchema, value, `adapter from ${source}`);
  if (!parsed.ok) {
    throw new RbeeError('invalid_request', parsed.message);
  }
  const {backends} = value as {backends?: unknown};
  if (backends !== undefined && typeof backends !== 'function') {
    const declared = parseWire(AdapterBackendsSchema, backends, `\`backends\` of adapter from ${source}`);
    if (!declared.ok) {
      throw new RbeeError('invalid_request', declared.message);
    }
  }
  return value as RbeeAdapter;
}

/** Types an adapter and checks its shape at once, so a broken plugin fails where it is defined. */
export function defineAdapter<T extends RbeeAdapter>(adapter: T): T {
  assertAdapter(adapter, typeof adapter?.name === 'string' ? adapter.name : 'defineAdapter()');
  return adapter;
}

/** Validates an adapter factory's options; the error names the adapter and the option. */
export function parseAdapterOptions<S extends z.ZodType>(adapterName: string, schema: S, options: unknown): z.output<S> {
  const parsed = parseWire(schema, options ?? {}, `options of adapter ${adapterName}`);
  if (!parsed.ok) {
    throw new RbeeError('invalid_request', parsed.message);
  }
  return parsed.value;
}

const GenerateResultSchema = z.object({
  text: z.string(),
  tokensGenerated: z.number().int().nonnegative(),
  promptTokens: z.number().int().nonnegative(),
  finishReason: FinishReasonSchema,
});

/**
 * A plugin's `infer` answer is input from outside like any other: checked before it reaches a
 * client, so a broken plugin is a 502 that names it, never a 200 with a number for text.
 */
export function checkInferResult(adapterName: string, value: unknown): GenerateResult {
  const parsed = parseWire(GenerateResultSchema, value, `infer result from adapter ${adapterName}`);
  if (!parsed.ok) {
    throw new RbeeError('adapter_error', parsed.message);
  }
  return parsed.value;
}

/** A piece of streamed text from a plugin (`onText`): a string, or the request fails naming the plugin. */
export function checkStreamedText(adapterName: string, value: unknown): RbeeError | null {
  return typeof value === 'string'
    ? null
    : new RbeeError(
        'adapter_error',
        `adapter ${adapterName} streamed an invalid event: onText expects a string, got ${value === null ? 'null' : typeof value}`,
      );
}

/** A plugin's `countTokens` answer: a token count, or the request fails naming the plugin. */
export function checkTokenCount(adapterName: string, value: unknown): number {
  const parsed = parseWire(z.number().int().nonnegative(), value, `token count from adapter ${adapterName}`);
  if (!parsed.ok) {
    throw new RbeeError('adapter_error', parsed.message);
  }
  return parsed.value;
}
