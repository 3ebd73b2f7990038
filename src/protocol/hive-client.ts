/**
 * The typed client of a hive's HTTP API: one method per route (named in hive-routes.ts), every
 * answer parsed with its wire schema, every failure an RbeeError with a stable code. The CLI, the
 * dashboard and the benchmarks reach a hive only through this; a program of your own can too
 * (`import {HiveClient} from 'rbee/protocol'`).
 */
import type {z} from 'zod';
import {RbeeError, type ErrorCode} from './errors.js';
import {hiveRoutes, routePath, type HiveRouteName, type RouteParams} from './hive-routes.js';
import {parseWire} from './parse.js';
import {readSse, type SseEvent} from './sse-reader.js';
import {
  AdapterListSchema,
  ChatCompletionChunkSchema,
  ChatCompletionSchema,
  ErrorBodySchema,
  GroupInfoSchema,
  GroupListSchema,
  HiveEventSchema,
  HiveHealthSchema,
  HiveStatusSchema,
  InferResponseSchema,
  InferStreamEventSchema,
  ModelListSchema,
  CatalogueListSchema,
  OpenAiErrorBodySchema,
  ShutdownAnswerSchema,
  SpawnPlanSchema,
  TextCompletionSchema,
  WorkerInfoSchema,
  WorkerKeySchema,
  WorkerListSchema,
  WorkflowCancelResponseSchema,
  WorkflowEventSchema,
  type AdapterList,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  type CompletionRequest,
  type GroupInfo,
  type GroupList,
  type HiveCommand,
  type HiveEvent,
  type HiveHealth,
  type HiveStatus,
  type InferRequest,
  type InferResponse,
  type InferStreamEvent,
  type WorkflowCancelResponse,
  type WorkflowEvent,
  type WorkflowOutputFile,
  type WorkflowRequest,
  type ModelList,
  type CatalogueList,
  type ShutdownAnswer,
  type SpawnGroupRequestInput,
  type SpawnPlan,
  type SpawnWorkerRequestInput,
  type TextCompletion,
  type WorkerInfo,
  type WorkerKey,
  type WorkerList,
} from './wire.js';

export type HiveClientOptions = {
  /** The hive's base URL, e.g. `http://127.0.0.1:7833`. */
  url: string;
  /** The hive's API token, sent as `Authorization: Bearer`; none for a hive without one. */
  token?: string | undefined;
  /** How long a non-streamed call may take, unless the call says otherwise (default 30 s). */
  timeoutMs?: number;
  /** What to tell the user when no hive answers (default: how to start one). */
  unreachableHint?: string;
};

/** For a call answered in one body. */
export type CallOptions = {signal?: AbortSignal; timeoutMs?: number};

/** For a streamed answer: no time limit of its own, it lasts as long as the generation. */
export type StreamOptions = {signal?: AbortSignal};

export type EventStreamOptions = {
  signal?: AbortSignal;
  /**
   * Give up with a `timeout` error after this long without a byte, not even the hive's keep-alive
   * comment: a hung hive keeps its socket open, so nothing else would tell (see `eventStallMs`).
   */
  stallMs?: number;
};

type Send<Name extends HiveRouteName> = {
  name: Name;
  params: RouteParams<Name>;
  /** Path segments after the route's own, already encoded (an output file's `output/<subfolder>/<name>`). */
  suffix?: string;
  query?: Record<string, string>;
  body?: unknown;
};

type Answer = {response: Response; label: string};

const noParams = {} as Record<never, never>;

export class HiveClient {
  readonly url: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly #unreachableHint: string;

  constructor(options: HiveClientOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.#token = options.token;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#unreachableHint = options.unreachableHint ?? 'start one with `rbee hive start`';
  }

  // -- the hive ---------------------------------------------------------------------------------

  health(options?: CallOptions): Promise<HiveHealth> {
    return this.#json({name: 'health', params: noParams}, HiveHealthSchema, 'health answer', options);
  }

  status(options?: CallOptions): Promise<HiveStatus> {
    return this.#json({name: 'status', params: noParams}, HiveStatusSchema, 'hive status', options);
  }

  /** Asks the hive to stop its workers and exit; it answers before it starts. */
  shutdown(options?: CallOptions): Promise<ShutdownAnswer> {
    return this.#json({name: 'shutdown', params: noParams, body: {}}, ShutdownAnswerSchema, 'shutdown answer', options);
  }

  adapters(options?: CallOptions): Promise<AdapterList> {
    return this.#json({name: 'adapters', params: noParams}, AdapterListSchema, 'adapter list', options);
  }

  /** The hive's Prometheus metrics, as the text exposition format. */
  async metrics(options?: CallOptions): Promise<string> {
    const {text} = await this.#body({name: 'metrics', params: noParams}, options);
    return text;
  }

  // -- workers ----------------------------------------------------------------------------------

  /** The live workers; with `all`, the stopped and failed ones the hive still remembers too. */
  listWorkers(options: CallOptions & {all?: boolean} = {}): Promise<WorkerList> {
    return this.#json({name: 'listWorkers', params: noParams, query: options.all === true ? {all: '1'} : {}}, WorkerListSchema, 'worker list', options);
  }

  getWorker(id: string, options?: CallOptions): Promise<WorkerInfo> {
    return this.#json({name: 'getWorker', params: {id}}, WorkerInfoSchema, 'worker', options);
  }

  /** What opens the worker's own port, to call it directly (`Authorization: Bearer <key>`). */
  workerKey(id: string, options?: CallOptions): Promise<WorkerKey> {
    return this.#json({name: 'workerKey', params: {id}}, WorkerKeySchema, 'worker key', options);
  }

  /** Starts a worker; the answer comes once its process is launched, not when it is ready. */
  spawnWorker(request: Omit<SpawnWorkerRequestInput, 'dry_run'>, options?: CallOptions): Promise<WorkerInfo> {
    return this.#json({name: 'spawnWorker', params: noParams, body: request}, WorkerInfoSchema, 'worker', options);
  }

  /** Where a worker would go and whether it fits (`dry_run`): starts nothing. */
  planWorker(request: Omit<SpawnWorkerRequestInput, 'dry_run'>, options?: CallOptions): Promise<SpawnPlan> {
    return this.#json({name: 'spawnWorker', params: noParams, body: {...request, dry_run: true}}, SpawnPlanSchema, 'spawn plan', options);
  }

  /** Stops a worker and answers with its record once its process is gone. */
  stopWorker(id: string, options?: CallOptions): Promise<WorkerInfo> {
    return this.#json({name: 'stopWorker', params: {id}}, WorkerInfoSchema, 'worker', options);
  }

  /** Queues a command (`drain`, `unload_model`, `shutdown`) for the worker's next heartbeat answer. */
  commandWorker(id: string, command: HiveCommand, options?: CallOptions): Promise<WorkerInfo> {
    return this.#json({name: 'commandWorker', params: {id}, body: command}, WorkerInfoSchema, 'worker', options);
  }

  // -- groups -----------------------------------------------------------------------------------

  listGroups(options: CallOptions & {all?: boolean} = {}): Promise<GroupList> {
    return this.#json({name: 'listGroups', params: noParams, query: options.all === true ? {all: '1'} : {}}, GroupListSchema, 'group list', options);
  }

  getGroup(id: string, options?: CallOptions): Promise<GroupInfo> {
    return this.#json({name: 'getGroup', params: {id}}, GroupInfoSchema, 'group', options);
  }

  spawnGroup(request: SpawnGroupRequestInput, options?: CallOptions): Promise<GroupInfo> {
    return this.#json({name: 'spawnGroup', params: noParams, body: request}, GroupInfoSchema, 'group', options);
  }

  stopGroup(id: string, options?: CallOptions): Promise<GroupInfo> {
    return this.#json({name: 'stopGroup', params: {id}}, GroupInfoSchema, 'group', options);
  }

  // -- inference --------------------------------------------------------------------------------

  models(options?: CallOptions): Promise<ModelList> {
    return this.#json({name: 'models', params: noParams}, ModelListSchema, 'model list', options);
  }

  /** The model catalogue (models on demand) and the state of each entry. */
  catalogue(options?: CallOptions): Promise<CatalogueList> {
    return this.#json({name: 'catalogue', params: noParams}, CatalogueListSchema, 'model catalogue', options);
  }

  infer(request: Omit<InferRequest, 'stream'>, options?: CallOptions): Promise<InferResponse> {
    return this.#json({name: 'infer', params: noParams, body: request}, InferResponseSchema, 'infer response', options);
  }

  /**
   * A streamed /v1/infer: its `token` events, then one `done` or `error` event (an `error` event
   * is yielded, not thrown: it is part of the answer). A stream that ends without either was cut
   * off, and throws.
   */
  async *inferStream(request: Omit<InferRequest, 'stream'>, options: StreamOptions = {}): AsyncGenerator<InferStreamEvent, void, undefined> {
    const send: Send<'infer'> = {name: 'infer', params: noParams, body: {...request, stream: true}};
    let ended = false;
    for await (const event of this.#events(send, options)) {
      const parsed = this.#parseData(InferStreamEventSchema, event.data, 'stream event', send);
      ended = parsed.type !== 'token';
      yield parsed;
    }
    if (!ended) {
      throw new RbeeError('upstream_error', `the hive's answer to ${this.#label(send)} ended without a final event (done or error): it is incomplete`);
    }
  }

  chatCompletion(request: Omit<ChatCompletionRequest, 'stream'>, options?: CallOptions): Promise<ChatCompletion> {
    return this.#json({name: 'chatCompletions', params: noParams, body: request}, ChatCompletionSchema, 'chat completion', options);
  }

  /** A streamed chat completion's chunks, until `[DONE]`; an error in the stream throws with its code. */
  chatCompletionStream(request: Omit<ChatCompletionRequest, 'stream'>, options: StreamOptions = {}): AsyncGenerator<ChatCompletionChunk, void, undefined> {
    return this.#openAiStream(
      {name: 'chatCompletions', params: noParams, body: {...request, stream: true}},
      ChatCompletionChunkSchema,
      'chat completion chunk',
      options,
    );
  }

  completion(request: Omit<CompletionRequest, 'stream'>, options?: CallOptions): Promise<TextCompletion> {
    return this.#json({name: 'completions', params: noParams, body: request}, TextCompletionSchema, 'completion', options);
  }

  completionStream(request: Omit<CompletionRequest, 'stream'>, options: StreamOptions = {}): AsyncGenerator<TextCompletion, void, undefined> {
    return this.#openAiStream({name: 'completions', params: noParams, body: {...request, stream: true}}, TextCompletionSchema, 'completion chunk', options);
  }

  // -- workflows --------------------------------------------------------------------------------

  /**
   * Runs a workflow on a workflow worker (ComfyUI) and yields its events as they come: queued,
   * executing, cached, progress, executed, then one `done` or `error` (yielded, not thrown). A
   * workflow the engine refuses throws (a 400 naming the node); a stream cut off throws.
   */
  async *runWorkflow(request: WorkflowRequest, options: StreamOptions = {}): AsyncGenerator<WorkflowEvent, void, undefined> {
    const send: Send<'runWorkflow'> = {name: 'runWorkflow', params: noParams, body: request};
    let ended = false;
    for await (const event of this.#events(send, options)) {
      const parsed = this.#parseData(WorkflowEventSchema, event.data, 'workflow event', send);
      ended = parsed.type === 'done' || parsed.type === 'error';
      yield parsed;
    }
    if (!ended) {
      throw new RbeeError('upstream_error', `the hive's answer to ${this.#label(send)} ended without a final event (done or error): it is incomplete`);
    }
  }

  /** Interrupts a running workflow, or takes a waiting one off the engine's queue. */
  cancelWorkflow(id: string, options?: CallOptions): Promise<WorkflowCancelResponse> {
    return this.#json({name: 'cancelWorkflow', params: {id}}, WorkflowCancelResponseSchema, 'workflow cancel answer', options);
  }

  /** One file a workflow wrote, as its `executed` or `done` event names it, fetched through the hive. */
  async workflowOutput(
    id: string,
    file: Pick<WorkflowOutputFile, 'type' | 'subfolder' | 'filename'>,
    options: CallOptions = {},
  ): Promise<{bytes: Uint8Array; contentType: string}> {
    const suffix = [file.type, ...file.subfolder.split('/').filter(part => part !== ''), file.filename].map(encodeURIComponent).join('/');
    const send: Send<'workflowOutputs'> = {name: 'workflowOutputs', params: {id}, suffix};
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.#timeoutMs);
    const signal = options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]);
    const {response, label} = await this.#send(send, signal, options.signal);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await response.arrayBuffer());
    } catch (error) {
      throw this.#networkError(error, label, options.signal, true);
    }
    if (!response.ok) {
      throw this.#errorFrom(response.status, Buffer.from(bytes).toString('utf8'));
    }
    return {bytes, contentType: response.headers.get('content-type') ?? 'application/octet-stream'};
  }

  // -- the event stream -------------------------------------------------------------------------

  /** The hive's live events (GET /v1/events), each parsed; a malformed one throws, naming the field. */
  async *events(options: EventStreamOptions = {}): AsyncGenerator<HiveEvent, void, undefined> {
    const send: Send<'events'> = {name: 'events', params: noParams};
    for await (const event of this.#events(send, options)) {
      yield this.#parseData(HiveEventSchema, event.data, 'hive event', send);
    }
  }

  /**
   * The same stream's `data:` payloads, unparsed: for a follower that judges each event itself
   * (the dashboard skips and counts a bad one rather than dropping the stream).
   */
  async *eventData(options: EventStreamOptions = {}): AsyncGenerator<string, void, undefined> {
    for await (const event of this.#events({name: 'events', params: noParams}, options)) {
      yield event.data;
    }
  }

  // -- plumbing ---------------------------------------------------------------------------------

  #label(send: Send<HiveRouteName>): string {
    return `${hiveRoutes[send.name].method} ${this.#path(send)}`;
  }

  #path(send: Send<HiveRouteName>): string {
    const path = routePath(send.name, send.params as never, send.query);
    return send.suffix === undefined ? path : path.replace(/(\?|$)/, `/${send.suffix}$1`);
  }

  async #send(send: Send<HiveRouteName>, signal: AbortSignal, callerSignal: AbortSignal | undefined): Promise<Answer> {
    const path = this.#path(send);
    const {method} = hiveRoutes[send.name];
    const label = `${method} ${path}`;
    const headers: Record<string, string> = {};
    if (send.body !== undefined) {
      headers['content-type'] = 'application/json';
    }
    if (this.#token !== undefined) {
      headers.authorization = `Bearer ${this.#token}`;
    }
    try {
      const response = await fetch(`${this.url}${path}`, {
        method,
        headers,
        signal,
        ...(send.body === undefined ? {} : {body: JSON.stringify(send.body)}),
      });
      return {response, label};
    } catch (error) {
      throw this.#networkError(error, label, callerSignal);
    }
  }

  #networkError(error: unknown, label: string, callerSignal: AbortSignal | undefined, broke = false): unknown {
    if (callerSignal?.aborted === true) {
      return error; // the caller's own abort: theirs to expect, not a failure of the hive
    }
    if ((error as Error).name === 'TimeoutError') {
      return new RbeeError('timeout', `hive at ${this.url} did not answer ${label} in time`, {cause: error});
    }
    if (broke) {
      return new RbeeError('hive_unreachable', `the hive at ${this.url} broke off its answer to ${label}: ${(error as Error).message}`, {cause: error});
    }
    return new RbeeError('hive_unreachable', `no hive at ${this.url} (${this.#unreachableHint})`, {cause: error});
  }

  /** A whole answer's text, or the hive's error as an RbeeError. */
  async #body(send: Send<HiveRouteName>, options: CallOptions = {}): Promise<{text: string; label: string}> {
    const timeout = AbortSignal.timeout(options.timeoutMs ?? this.#timeoutMs);
    const signal = options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]);
    const {response, label} = await this.#send(send, signal, options.signal);
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw this.#networkError(error, label, options.signal, true);
    }
    if (!response.ok) {
      throw this.#errorFrom(response.status, text);
    }
    return {text, label};
  }

  async #json<S extends z.ZodType>(send: Send<HiveRouteName>, schema: S, what: string, options?: CallOptions): Promise<z.output<S>> {
    const {text} = await this.#body(send, options);
    return this.#parseData(schema, text, what, send);
  }

  #parseData<S extends z.ZodType>(schema: S, text: string, what: string, send: Send<HiveRouteName>): z.output<S> {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new RbeeError('invalid_response', `the hive at ${this.url} answered ${this.#label(send)} with a ${what} that is not JSON: ${text.slice(0, 200)}`, {
        cause: error,
      });
    }
    const parsed = parseWire(schema, value, what);
    if (!parsed.ok) {
      throw new RbeeError('invalid_response', `the hive at ${this.url} answered ${this.#label(send)} with an ${parsed.message}`, {
        field: parsed.issues[0]?.field,
      });
    }
    return parsed.value;
  }

  /** The hive's `{error: {code, message}}` (or the OpenAI routes' shape) as an RbeeError with the same code and status. */
  #errorFrom(status: number, text: string): RbeeError {
    let value: unknown = null;
    try {
      value = JSON.parse(text);
    } catch {
      // not JSON (a proxy's page, say): reported as text below
    }
    // The OpenAI routes' shape first: it also names the request field at fault (`param`).
    const openAi = OpenAiErrorBodySchema.safeParse(value);
    if (openAi.success) {
      const {error} = openAi.data;
      return new RbeeError((error.code ?? 'upstream_error') as ErrorCode, error.message, {status, field: error.param ?? undefined});
    }
    const body = ErrorBodySchema.safeParse(value);
    if (body.success) {
      return new RbeeError(body.data.error.code as ErrorCode, body.data.error.message, {status});
    }
    return new RbeeError('upstream_error', `hive answered ${status}: ${text.slice(0, 200)}`, {status});
  }

  /**
   * The SSE events of a streamed answer. With `stallMs`, a watchdog restarted by every byte that
   * arrives ends a silent stream with a `timeout` error.
   */
  async *#events(send: Send<HiveRouteName>, options: EventStreamOptions): AsyncGenerator<SseEvent, void, undefined> {
    const controller = new AbortController();
    const abort = () => controller.abort(options.signal?.reason);
    if (options.signal?.aborted === true) {
      abort();
    }
    options.signal?.addEventListener('abort', abort, {once: true});
    const {stallMs} = options;
    let stalled = false;
    let watchdog: NodeJS.Timeout | undefined;
    let heardAt = 0;
    // One timer that looks at when the stream was last heard, not one re-armed per chunk: a busy
    // stream (hundreds of events a second) costs a clock read per chunk.
    const watch = (ms: number) => {
      watchdog = setTimeout(() => {
        const quiet = performance.now() - heardAt;
        if (quiet >= stallMs!) {
          stalled = true;
          controller.abort();
        } else {
          watch(stallMs! - quiet);
        }
      }, ms);
    };
    const heard = () => {
      heardAt = performance.now();
      if (stallMs !== undefined && watchdog === undefined) {
        watch(stallMs);
      }
    };
    try {
      heard();
      const {response, label} = await this.#send(send, controller.signal, options.signal);
      if (!response.ok || response.body === null) {
        throw this.#errorFrom(response.status, await response.text());
      }
      const body = response.body;
      async function* noted(): AsyncGenerator<Uint8Array> {
        for await (const chunk of body) {
          heard();
          yield chunk;
        }
      }
      try {
        yield* readSse(noted());
      } catch (error) {
        throw stalled ? error : this.#networkError(error, label, options.signal, true);
      }
    } catch (error) {
      if (stalled) {
        throw new RbeeError('timeout', `the hive at ${this.url} sent nothing for ${stallMs! / 1000} s, not even a keep-alive: it is hung, or the network is`, {
          cause: error,
        });
      }
      throw error;
    } finally {
      clearTimeout(watchdog);
      options.signal?.removeEventListener('abort', abort);
    }
  }

  async *#openAiStream<S extends z.ZodType>(
    send: Send<HiveRouteName>,
    schema: S,
    what: string,
    options: StreamOptions,
  ): AsyncGenerator<z.output<S>, void, undefined> {
    for await (const event of this.#events(send, options)) {
      if (event.data === '[DONE]') {
        return;
      }
      const failure = OpenAiErrorBodySchema.safeParse(safeJson(event.data));
      if (failure.success) {
        const {error} = failure.data;
        throw new RbeeError((error.code ?? 'upstream_error') as ErrorCode, error.message, {field: error.param ?? undefined});
      }
      yield this.#parseData(schema, event.data, what, send);
    }
    throw new RbeeError('upstream_error', `the hive's answer to ${this.#label(send)} ended before [DONE]: it is incomplete`);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
