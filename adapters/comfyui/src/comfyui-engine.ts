/**
 * A ComfyUI server (`python main.py`) as the engine: workflows are queued on its /prompt with
 * this worker's client id, followed on its /ws, their files read from /view; the heartbeat reads
 * /system_stats and /queue. ComfyUI has no API key: it binds 127.0.0.1 on a port of its own.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  RbeeError,
  WatchedEngine,
  engineAuthorization,
  engineJson,
  processTreeRss,
  type AdapterContext,
  type AdapterHeartbeat,
  type AdapterWorkflowOutput,
  type AdapterWorkflowRequest,
  type AdapterWorkflowResult,
  type WorkflowOutputFile,
} from 'rbee';
import {messagePromptId, modelsNamed, parseComfyMessage, promptRefusal, translate, unknownNodes, type ComfyMessage} from './comfy-events.js';
import {comfyKeyLauncher, comfyKeyVariable} from './comfy-key-launcher.js';
import {connectTextSocket, type TextSocket} from './comfy-websocket.js';

export type ComfyUiLaunch = {python: string; comfyDir: string; customNodes: string[]; args: string[]};

type Tracked = {
  workflowId: string;
  promptId: string;
  request: AdapterWorkflowRequest;
  outputs: WorkflowOutputFile[];
  started: boolean;
  currentNode: string | null;
  progress: number;
  settle: (outcome: {ok: true} | {ok: false; error: RbeeError}) => void;
};

type SystemStats = {devices?: Array<{type?: string; vram_total?: number; vram_free?: number}>};
type QueueInfo = {queue_running?: unknown[]; queue_pending?: unknown[]};

/** Workflows whose files can still be fetched: the latest ones, so a long-lived worker does not grow without end. */
const keptWorkflows = 256;
/** Messages for a prompt ComfyUI began before its POST /prompt was answered. */
const earlyMessageLimit = 1_000;

export class ComfyUiEngine {
  readonly #context: AdapterContext;
  readonly #engine: WatchedEngine;
  readonly #port: number;
  readonly #base: string;
  readonly #workDir: string;
  readonly #clientId = crypto.randomUUID();
  #socket: TextSocket | null = null;
  #connecting: Promise<void> | null = null;
  #nodeTypes: Set<string> | null = null;
  readonly #byPrompt = new Map<string, Tracked>();
  readonly #byWorkflow = new Map<string, Tracked>();
  readonly #early = new Map<string, ComfyMessage[]>();
  readonly #finishedOutputs = new Map<string, WorkflowOutputFile[]>();
  readonly #loadedModels = new Set<string>();
  #stopping = false;
  /** What ComfyUI's port demands (comfy-key-launcher.ts): other local users cannot use it. */
  readonly #key: string;

  private constructor(context: AdapterContext, engine: WatchedEngine, port: number, workDir: string, key: string) {
    this.#key = key;
    this.#context = context;
    this.#engine = engine;
    this.#port = port;
    this.#base = `http://127.0.0.1:${port}`;
    this.#workDir = workDir;
    // A dead engine ends every workflow it had at once: their clients get an error event now.
    void engine.process.exited.then(exit => {
      const how = exit.signal === null ? `exited with code ${exit.code}` : `was killed by ${exit.signal}`;
      this.#failAll(new RbeeError('engine_error', `ComfyUI ${how} while running the workflow`));
    });
  }

  static arguments(launch: ComfyUiLaunch, context: AdapterContext, port: number, workDir: string, extraPaths: string | null): string[] {
    return [
      '-c',
      comfyKeyLauncher,
      path.join(launch.comfyDir, 'main.py'),
      '--listen',
      '127.0.0.1',
      '--port',
      String(port),
      // Each worker its own folders: two workers of one ComfyUI copy never see each other's files.
      '--output-directory',
      path.join(workDir, 'output'),
      '--temp-directory',
      workDir,
      '--input-directory',
      path.join(workDir, 'input'),
      ...(extraPaths === null ? [] : ['--extra-model-paths-config', extraPaths]),
      ...(context.device === 'cpu' ? ['--cpu'] : []),
      ...launch.args,
    ];
  }

  static async start(context: AdapterContext, launch: ComfyUiLaunch): Promise<ComfyUiEngine> {
    const port = await context.freePort();
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), `rbee-comfyui-${context.workerId}-`));
    fs.chmodSync(workDir, 0o700);
    for (const folder of ['output', 'input']) {
      fs.mkdirSync(path.join(workDir, folder), {mode: 0o700});
    }
    // Extra custom-node folders go through ComfyUI's own extra_model_paths mechanism.
    let extraPaths: string | null = null;
    if (launch.customNodes.length > 0) {
      extraPaths = path.join(workDir, 'extra_model_paths.yaml');
      const lines = ['rbee:', '  custom_nodes: |', ...launch.customNodes.map(folder => `    ${path.resolve(folder)}`)];
      fs.writeFileSync(extraPaths, `${lines.join('\n')}\n`, {mode: 0o600});
    }
    const args = ComfyUiEngine.arguments(launch, context, port, workDir, extraPaths);
    const key = crypto.randomBytes(32).toString('base64url');
    context.log(`starting ${launch.python} -c <rbee's key launcher> ${args.slice(2).join(' ')}`);
    const engine = WatchedEngine.spawn(
      context,
      {command: launch.python, args, env: {PYTHONUNBUFFERED: '1', [comfyKeyVariable]: key}},
      {
        name: 'comfyui',
        onExit: () => fs.rmSync(workDir, {recursive: true, force: true}),
      },
    );
    return new ComfyUiEngine(context, engine, port, workDir, key);
  }

  get pid(): number {
    return this.#engine.pid;
  }

  /**
   * Ready once /system_stats answers, the node list is read and the WebSocket is open. One look
   * per call: the worker asks every 25 ms while the engine starts (a refused loopback connection
   * costs next to nothing), so a watch loop of its own here would only duplicate that poll.
   */
  async ready(): Promise<boolean> {
    this.#engine.throwIfFailed();
    try {
      await engineJson<SystemStats>(`${this.#base}/system_stats`, {timeoutMs: 2_000, apiKey: this.#key});
      this.#nodeTypes ??= new Set(Object.keys(await engineJson<Record<string, unknown>>(`${this.#base}/object_info`, {timeoutMs: 10_000, apiKey: this.#key})));
      await this.#connect();
      return true;
    } catch {
      return false;
    }
  }

  async #connect(): Promise<void> {
    if (this.#socket !== null) {
      return;
    }
    this.#connecting ??= connectTextSocket(
      {host: '127.0.0.1', port: this.#port, path: `/ws?clientId=${this.#clientId}`, authorization: `Bearer ${this.#key}`, timeoutMs: 5_000},
      text => this.#onMessage(text),
    )
      .then(socket => {
        this.#socket = socket;
        void socket.closed.then(reason => {
          this.#socket = null;
          if (!this.#stopping && this.#engine.failure === null) {
            this.#context.log(`ComfyUI's WebSocket closed (${reason}); reconnecting at the next workflow or heartbeat`);
          }
        });
      })
      .finally(() => {
        this.#connecting = null;
      });
    await this.#connecting;
  }

  #onMessage(text: string): void {
    const message = parseComfyMessage(text);
    if (message === null) {
      return;
    }
    const promptId = messagePromptId(message);
    if (promptId === null) {
      // Older ComfyUI progress messages name no prompt: they belong to the one running.
      if (message.type === 'progress') {
        const running = [...this.#byPrompt.values()].find(tracked => tracked.started);
        if (running !== undefined) {
          this.#apply(running, message);
        }
      }
      return;
    }
    const tracked = this.#byPrompt.get(promptId);
    if (tracked === undefined) {
      const early = this.#early.get(promptId) ?? [];
      if (early.length < earlyMessageLimit) {
        early.push(message);
        this.#early.set(promptId, early);
      }
      return;
    }
    this.#apply(tracked, message);
  }

  #apply(tracked: Tracked, message: ComfyMessage): void {
    if (message.type === 'execution_start' || message.type === 'executing') {
      tracked.started = true;
    }
    const {event, outcome} = translate(message, tracked.workflowId, tracked.request.workflow);
    if (event?.type === 'executing') {
      tracked.currentNode = event.node;
      tracked.progress = 0;
    } else if (event?.type === 'progress') {
      tracked.currentNode = event.node ?? tracked.currentNode;
      tracked.progress = Math.min(1, event.value / event.max);
    } else if (event?.type === 'executed') {
      tracked.outputs.push(...event.outputs);
    }
    if (event !== null) {
      tracked.request.onEvent(event);
    }
    if (outcome !== null) {
      tracked.settle(outcome.kind === 'finished' ? {ok: true} : {ok: false, error: outcome.error});
    }
  }

  async run(request: AdapterWorkflowRequest): Promise<AdapterWorkflowResult> {
    this.#engine.throwIfFailed();
    if (this.#byWorkflow.has(request.workflowId)) {
      throw new RbeeError('invalid_request', `workflow ${request.workflowId} is already running on this worker`, {field: 'workflow_id'});
    }
    const unknown = this.#nodeTypes === null ? null : unknownNodes(request.workflow, this.#nodeTypes);
    if (unknown !== null) {
      throw unknown;
    }
    await this.#connect();
    let response: Response;
    try {
      response = await fetch(`${this.#base}/prompt`, {
        method: 'POST',
        headers: {'content-type': 'application/json', ...engineAuthorization(this.#key)},
        body: JSON.stringify({prompt: request.workflow, client_id: this.#clientId, extra_data: {rbee_workflow_id: request.workflowId}}),
        signal: AbortSignal.any([request.signal, AbortSignal.timeout(30_000)]),
      });
    } catch (error) {
      return this.#engine.explain(new RbeeError('engine_error', `ComfyUI did not take the workflow: ${(error as Error).message}`, {cause: error}));
    }
    const answer = (await response.json().catch(() => null)) as {prompt_id?: unknown; error?: unknown; node_errors?: unknown} | null;
    if (response.status === 400) {
      throw promptRefusal(answer);
    }
    if (!response.ok || typeof answer?.prompt_id !== 'string') {
      throw new RbeeError('engine_error', `ComfyUI answered POST /prompt with ${response.status}: ${JSON.stringify(answer).slice(0, 300)}`);
    }
    const promptId = answer.prompt_id;
    for (const model of modelsNamed(request.workflow)) {
      this.#loadedModels.add(model);
    }
    const ahead = [...this.#byPrompt.values()].length;
    let settle!: Tracked['settle'];
    const settled = new Promise<{ok: true} | {ok: false; error: RbeeError}>(resolve => {
      settle = resolve;
    });
    const tracked: Tracked = {workflowId: request.workflowId, promptId, request, outputs: [], started: false, currentNode: null, progress: 0, settle};
    this.#byPrompt.set(promptId, tracked);
    this.#byWorkflow.set(request.workflowId, tracked);
    const onAbort = () => void this.cancel(request.workflowId).catch(() => undefined);
    request.signal.addEventListener('abort', onAbort, {once: true});
    try {
      request.onEvent({
        type: 'queued',
        workflow_id: request.workflowId,
        worker_id: this.#context.workerId,
        prompt_id: promptId,
        queue_position: ahead,
        at: new Date().toISOString(),
      });
      for (const message of this.#early.get(promptId) ?? []) {
        this.#apply(tracked, message);
      }
      this.#early.delete(promptId);
      // Engine death may have come before the prompt was tracked.
      if (this.#engine.failure !== null) {
        tracked.settle({ok: false, error: new RbeeError('engine_error', this.#engine.failure)});
      }
      const outcome = await settled;
      if (!outcome.ok) {
        throw outcome.error;
      }
      return {outputs: tracked.outputs};
    } finally {
      request.signal.removeEventListener('abort', onAbort);
      this.#byPrompt.delete(promptId);
      this.#byWorkflow.delete(request.workflowId);
      this.#finishedOutputs.set(request.workflowId, tracked.outputs);
      while (this.#finishedOutputs.size > keptWorkflows) {
        this.#finishedOutputs.delete(this.#finishedOutputs.keys().next().value!);
      }
    }
  }

  /** Interrupts the workflow when it runs; takes it off ComfyUI's queue when it waits. */
  async cancel(workflowId: string): Promise<'interrupted' | 'dequeued' | 'finished'> {
    const tracked = this.#byWorkflow.get(workflowId);
    if (tracked === undefined) {
      if (this.#finishedOutputs.has(workflowId)) {
        return 'finished';
      }
      throw new RbeeError('not_found', `no workflow ${workflowId} on worker ${this.#context.workerId}`);
    }
    const queue = await engineJson<QueueInfo>(`${this.#base}/queue`, {timeoutMs: 5_000, apiKey: this.#key});
    // ComfyUI's queue entries are [number, prompt_id, prompt, extra_data, outputs].
    const pending = (queue.queue_pending ?? []).some(entry => Array.isArray(entry) && entry[1] === tracked.promptId);
    if (pending) {
      await this.#post('/queue', {delete: [tracked.promptId]});
      tracked.settle({ok: false, error: new RbeeError('engine_error', `workflow ${workflowId} was cancelled before it ran`)});
      return 'dequeued';
    }
    const running = (queue.queue_running ?? []).some(entry => Array.isArray(entry) && entry[1] === tracked.promptId);
    if (!running && !tracked.started) {
      return 'finished';
    }
    // /interrupt stops whatever runs; only ask when it is this workflow.
    await this.#post('/interrupt', {});
    return 'interrupted';
  }

  /** One of a workflow's files, only one it reported writing: a client never names any other file. */
  async output(workflowId: string, file: {type: string; subfolder: string; filename: string}): Promise<AdapterWorkflowOutput> {
    const outputs = this.#byWorkflow.get(workflowId)?.outputs ?? this.#finishedOutputs.get(workflowId);
    if (outputs === undefined) {
      throw new RbeeError('not_found', `no workflow ${workflowId} on worker ${this.#context.workerId}`);
    }
    const known = outputs.some(output => output.type === file.type && output.subfolder === file.subfolder && output.filename === file.filename);
    if (!known) {
      throw new RbeeError('not_found', `workflow ${workflowId} wrote no ${file.type} file ${[file.subfolder, file.filename].filter(Boolean).join('/')}`);
    }
    const query = new URLSearchParams({filename: file.filename, subfolder: file.subfolder, type: file.type});
    const response = await fetch(`${this.#base}/view?${query.toString()}`, {headers: engineAuthorization(this.#key), signal: AbortSignal.timeout(30_000)});
    if (!response.ok || response.body === null) {
      await response.body?.cancel();
      throw new RbeeError(response.status === 404 ? 'not_found' : 'engine_error', `ComfyUI answered /view with ${response.status} for ${file.filename}`);
    }
    return {body: response.body, contentType: response.headers.get('content-type') ?? 'application/octet-stream'};
  }

  /** ComfyUI frees models as a whole (/free unloads them all): asked for one, it frees every one. */
  async unloadModels(): Promise<void> {
    await this.#post('/free', {unload_models: true, free_memory: true});
    this.#loadedModels.clear();
  }

  async heartbeat(): Promise<AdapterHeartbeat> {
    if (this.#engine.failure !== null) {
      return {error: this.#engine.failure};
    }
    const running = [...this.#byPrompt.values()].find(tracked => tracked.started) ?? null;
    const workflow: AdapterHeartbeat = {
      current_workflow: running?.workflowId ?? null,
      workflow_progress: running === null ? null : {prompt_id: running.promptId, current_node: this.#nodeName(running), progress: running.progress},
      loaded_models: [...this.#loadedModels],
    };
    let stats: SystemStats;
    let queue: QueueInfo;
    try {
      [stats, queue] = await Promise.all([
        engineJson<SystemStats>(`${this.#base}/system_stats`, {timeoutMs: 3_000, apiKey: this.#key}),
        engineJson<QueueInfo>(`${this.#base}/queue`, {timeoutMs: 3_000, apiKey: this.#key}),
      ]);
      this.#engine.answered();
    } catch (error) {
      return this.#engine.unanswered(error, workflow);
    }
    if (this.#socket === null && !this.#stopping) {
      void this.#connect().catch(error => this.#context.log(`ComfyUI's WebSocket: ${(error as Error).message}`));
    }
    const device = stats.devices?.[0];
    // On --cpu ComfyUI reports system memory as its device's; that is RAM, so it is not called VRAM here.
    const vram =
      device !== undefined && device.type !== 'cpu' && typeof device.vram_total === 'number' && typeof device.vram_free === 'number'
        ? {vram_used: Math.max(0, Math.round(device.vram_total - device.vram_free)), vram_total: Math.round(device.vram_total)}
        : {};
    const ramUsed = await processTreeRss(this.#engine.pid);
    return {
      ...workflow,
      ...vram,
      ...(ramUsed === undefined ? {} : {ram_used: ramUsed}),
      queue_depth: (queue.queue_pending ?? []).length,
    };
  }

  /** `3 (KSampler)`: the node's id, which the events and errors use, with its class, which a person reads. */
  #nodeName(tracked: Tracked): string {
    if (tracked.currentNode === null) {
      return '';
    }
    const classType = tracked.request.workflow[tracked.currentNode]?.class_type;
    return classType === undefined ? tracked.currentNode : `${tracked.currentNode} (${classType})`;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#socket?.close();
    this.#failAll(new RbeeError('worker_not_ready', 'the worker is stopping'));
    await this.#engine.stop(5_000);
    fs.rmSync(this.#workDir, {recursive: true, force: true});
  }

  #failAll(error: RbeeError): void {
    for (const tracked of this.#byPrompt.values()) {
      tracked.settle({ok: false, error});
    }
  }

  async #post(route: string, body: unknown): Promise<void> {
    const response = await fetch(`${this.#base}${route}`, {
      method: 'POST',
      headers: {'content-type': 'application/json', ...engineAuthorization(this.#key)},
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5_000),
    });
    await response.body?.cancel();
    if (!response.ok) {
      throw new RbeeError('engine_error', `ComfyUI answered POST ${route} with ${response.status}`);
    }
  }
}
