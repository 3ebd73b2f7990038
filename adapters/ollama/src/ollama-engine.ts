/**
 * An `ollama serve` subprocess as the engine, owned by one worker: its own loopback port
 * (OLLAMA_HOST), its own model store (OLLAMA_MODELS, a 0700 folder removed with the engine unless
 * the user named a store of theirs) and keep-alive. The worker's GGUF (and any extra ones) are
 * imported with `ollama create`; each is then addressable by name in a request's `model`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  RbeeError,
  WatchedEngine,
  engineJson,
  processTreeRss,
  type AdapterContext,
  type AdapterHeartbeat,
  type AdapterInferRequest,
  type GenerateResult,
} from 'rbee';
import {
  finishReason,
  modelHeartbeat,
  modelfile,
  ollamaModelName,
  ollamaRequest,
  parsePs,
  parseStreamLine,
  parseTags,
  streamText,
  withoutLatestTag,
} from './ollama-requests.js';

export type OllamaLaunch = {
  binary: string;
  /** An existing Ollama store to serve from (its models stay); default: a fresh folder of the worker's own. */
  modelsDir: string | undefined;
  keepAlive: string;
  /** More GGUFs to import, by the name requests use for them. */
  models: Record<string, string>;
  /** Load the worker's model before reporting ready, so the first request does not pay for it. */
  preload: boolean;
};

const startupTimeoutMs = 60_000;
/** How often a starting `ollama serve` is asked: a refused loopback connection costs next to nothing, and every ms it answers sooner is spawn-to-ready time. */
const answerPollMs = 20;

/** Whether the worker's model is one of the store's own (`--model engine:<name>`): no file to import. */
function isStoreModel(context: AdapterContext): boolean {
  return context.modelPath === '';
}

export class OllamaEngine {
  readonly #base: string;
  readonly #engine: WatchedEngine;
  readonly #context: AdapterContext;
  readonly #launch: OllamaLaunch;
  readonly #env: Record<string, string>;
  /** rbee name → Ollama name, for the models this worker imported. */
  readonly #names = new Map<string, string>();
  #ready = false;
  #prepareError: unknown = null;
  /** Resolves once the engine works on its own for a while (its model import begun), or its preparation is over. */
  readonly #underway: Promise<void>;
  #markUnderway: () => void = () => undefined;

  private constructor(context: AdapterContext, launch: OllamaLaunch, port: number, env: Record<string, string>, engine: WatchedEngine) {
    this.#context = context;
    this.#launch = launch;
    this.#base = `http://127.0.0.1:${port}`;
    this.#env = env;
    this.#engine = engine;
    // An `engine:<name>` model is already in the store under its own name; a GGUF gets an Ollama-safe one.
    this.#names.set(context.modelName, isStoreModel(context) ? context.modelName : ollamaModelName(context.modelName));
    for (const name of Object.keys(launch.models)) {
      this.#names.set(name, ollamaModelName(name));
    }
    this.#underway = new Promise(resolve => {
      this.#markUnderway = resolve;
    });
    void this.#prepare()
      .catch((error: unknown) => {
        this.#prepareError = error;
      })
      .finally(() => this.#markUnderway());
  }

  /** The environment `ollama serve` (and `ollama create`, its client) runs with. */
  static environment(context: AdapterContext, launch: OllamaLaunch, port: number, modelsDir: string): Record<string, string> {
    return {
      OLLAMA_HOST: `127.0.0.1:${port}`,
      OLLAMA_MODELS: modelsDir,
      OLLAMA_KEEP_ALIVE: launch.keepAlive,
      OLLAMA_NUM_PARALLEL: String(context.parallel),
      OLLAMA_CONTEXT_LENGTH: String(context.contextSize),
      // Several models in one worker is the point of this engine; the scheduler still evicts on memory pressure.
      OLLAMA_MAX_LOADED_MODELS: String(Math.max(2, Object.keys(launch.models).length + 1)),
      // A CPU worker stays on the CPU even where the binary could find a GPU.
      ...(context.device === 'cpu' ? {CUDA_VISIBLE_DEVICES: '', HIP_VISIBLE_DEVICES: '', ROCR_VISIBLE_DEVICES: ''} : {}),
    };
  }

  static async start(context: AdapterContext, launch: OllamaLaunch): Promise<OllamaEngine> {
    const port = await context.freePort();
    const ownStore = launch.modelsDir === undefined;
    const modelsDir = launch.modelsDir ?? workerStore(context.workerId);
    const env = OllamaEngine.environment(context, launch, port, modelsDir);
    context.log(`starting ${launch.binary} serve (OLLAMA_HOST=${env.OLLAMA_HOST}, OLLAMA_MODELS=${modelsDir})`);
    const engine = WatchedEngine.spawn(
      context,
      {command: launch.binary, args: ['serve'], env},
      {name: 'ollama', ...(ownStore ? {onExit: () => fs.rmSync(modelsDir, {recursive: true, force: true})} : {})},
    );
    const ollama = new OllamaEngine(context, launch, port, env, engine);
    // Returned once `ollama serve` answers and the model import runs (seconds of the engine's own
    // work): the worker then does its own start-up work (its HTTP server) meanwhile rather than
    // while this engine waits on it to take each next step.
    await ollama.#underway;
    return ollama;
  }

  get pid(): number {
    return this.#engine.pid;
  }

  get url(): string {
    return this.#base;
  }

  /** Ready once the server answers, every model is imported and (with preload) the worker's model is loaded. */
  async ready(): Promise<boolean> {
    this.#engine.throwIfFailed();
    if (this.#prepareError !== null) {
      throw this.#prepareError;
    }
    return this.#ready;
  }

  async #prepare(): Promise<void> {
    await this.#untilAnswering();
    const imports: Array<[string, string]> = [
      ...(isStoreModel(this.#context) ? [] : [[this.#context.modelName, this.#context.modelPath] as [string, string]]),
      ...Object.entries(this.#launch.models),
    ];
    const present = new Set(
      (parseTags(await engineJson(`${this.#base}/api/tags`, {timeoutMs: 5_000})).models ?? []).map(model => withoutLatestTag(model.name)),
    );
    if (isStoreModel(this.#context) && !present.has(withoutLatestTag(this.#context.modelName))) {
      throw new RbeeError(
        'model_not_found',
        `the Ollama store at ${this.#env.OLLAMA_MODELS} has no model "${this.#context.modelName}" (it has: ${[...present].join(', ') || 'none'}): \`ollama pull\` or \`ollama create\` it there, or give a GGUF`,
      );
    }
    for (const [index, [name, file]] of imports.entries()) {
      const ollamaName = this.#names.get(name)!;
      if (!present.has(ollamaName)) {
        await this.#create(ollamaName, file);
      }
      this.#context.reportLoadProgress((index + 1) / (imports.length + 1));
    }
    this.#markUnderway();
    if (this.#launch.preload) {
      // A generate without a prompt only loads the model (and keeps it for the keep-alive).
      await engineJson(`${this.#base}/api/generate`, {body: {model: this.#names.get(this.#context.modelName)}, timeoutMs: 600_000});
    }
    // Ready before the progress that says so: the worker asks `ready()` again as soon as it hears it.
    this.#ready = true;
    this.#context.reportLoadProgress(1);
  }

  async #untilAnswering(): Promise<void> {
    const deadline = Date.now() + startupTimeoutMs;
    for (;;) {
      this.#engine.throwIfFailed();
      try {
        await engineJson(`${this.#base}/api/version`, {timeoutMs: 1_000});
        return;
      } catch (error) {
        if (Date.now() > deadline) {
          throw new RbeeError('engine_error', `ollama serve did not answer on ${this.#base} within ${startupTimeoutMs / 1000} s`, {cause: error});
        }
      }
      await Promise.race([this.#engine.process.exited, new Promise(resolve => setTimeout(resolve, answerPollMs))]);
    }
  }

  /** `ollama create NAME -f Modelfile`: the CLI hashes the GGUF, hands it to the server as a blob, and the server reads its template. */
  async #create(name: string, ggufPath: string): Promise<void> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-ollama-modelfile-'));
    try {
      const file = path.join(dir, 'Modelfile');
      fs.writeFileSync(file, modelfile(ggufPath, this.#context.contextSize), {mode: 0o600});
      this.#context.log(`importing ${ggufPath} into ollama as ${name}`);
      const create = this.#context.spawnEngine({command: this.#launch.binary, args: ['create', name, '-f', file], env: this.#env});
      this.#markUnderway();
      const exit = await create.exited;
      if (exit.code !== 0) {
        const output = create.recentOutput().split('\n').slice(-3).join(' | ');
        throw new RbeeError('engine_error', `ollama create ${name} failed (${exit.signal ?? `exit ${exit.code}`}): ${output}`);
      }
    } finally {
      fs.rmSync(dir, {recursive: true, force: true});
    }
  }

  /** The Ollama name a request's `model` means: a name this worker imported or its store holds, else the worker's own model. */
  ollamaNameFor(model: string | undefined): string {
    if (model !== undefined) {
      const imported = this.#names.get(model);
      if (imported !== undefined) {
        return imported;
      }
      if (this.#storeNames.has(model)) {
        return model;
      }
    }
    return this.#names.get(this.#context.modelName)!;
  }

  /** The name requests use for an Ollama model name. */
  rbeeNameFor(ollamaName: string): string {
    const bare = withoutLatestTag(ollamaName);
    for (const [rbee, ollama] of this.#names) {
      if (ollama === bare) {
        return rbee;
      }
    }
    return bare;
  }

  /** Names in the store at the last heartbeat (a user's store may hold more than this worker imported). */
  #storeNames = new Set<string>();

  async infer(request: AdapterInferRequest): Promise<GenerateResult> {
    this.#engine.throwIfFailed();
    const {path: route, body} = ollamaRequest(request, this.ollamaNameFor(request.model), this.#context.contextSize, {
      threads: this.#context.threads,
      cpuOnly: this.#context.device === 'cpu',
    });
    let text = '';
    let pieces = 0;
    let last: ReturnType<typeof parseStreamLine> | null = null;
    try {
      const response = await fetch(`${this.#base}${route}`, {
        method: 'POST',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify(body),
        signal: request.signal,
      });
      if (!response.ok || response.body === null) {
        const answer = (await response.text()).slice(0, 300);
        throw new RbeeError(response.status === 404 ? 'model_not_found' : 'upstream_error', `ollama ${route} answered ${response.status}: ${answer}`);
      }
      for await (const line of ndjsonLines(response.body)) {
        const parsed = parseStreamLine(line);
        const piece = streamText(parsed);
        if (piece !== '') {
          text += piece;
          pieces++;
          request.onText(piece);
        }
        if (parsed.done === true) {
          last = parsed;
        }
      }
    } catch (error) {
      if (request.signal.aborted) {
        return {text, tokensGenerated: pieces, promptTokens: 0, finishReason: 'cancelled'};
      }
      if (error instanceof RbeeError) {
        throw error;
      }
      return this.#engine.explain(new RbeeError('engine_error', `ollama ${route}: the stream broke off: ${(error as Error).message}`, {cause: error}));
    }
    if (last === null && !request.signal.aborted) {
      return this.#engine.explain(
        new RbeeError('engine_error', `ollama ${route} closed its stream before the final line (it crashed?); the answer is incomplete`),
      );
    }
    return {
      text,
      tokensGenerated: last?.eval_count ?? pieces,
      promptTokens: last?.prompt_eval_count ?? 0,
      finishReason: finishReason(last?.done_reason, request.signal.aborted),
    };
  }

  async heartbeat(): Promise<AdapterHeartbeat> {
    if (this.#engine.failure !== null) {
      return {error: this.#engine.failure};
    }
    const ramUsed = await processTreeRss(this.#engine.pid);
    const memory: AdapterHeartbeat = ramUsed === undefined ? {} : {ram_used: ramUsed};
    try {
      const [ps, tags] = await Promise.all([
        engineJson(`${this.#base}/api/ps`, {timeoutMs: 3_000}).then(parsePs),
        engineJson(`${this.#base}/api/tags`, {timeoutMs: 3_000}).then(parseTags),
      ]);
      this.#engine.answered();
      this.#storeNames = new Set((tags.models ?? []).map(model => withoutLatestTag(model.name)));
      return {...memory, ...modelHeartbeat(ps, tags, name => this.rbeeNameFor(name), [...this.#names.keys()])};
    } catch (error) {
      return this.#engine.unanswered(error, memory);
    }
  }

  /** `keep_alive: 0` on a prompt-less generate: Ollama unloads the model and keeps it in the store. */
  async unload(model: string): Promise<void> {
    this.#engine.throwIfFailed();
    await engineJson(`${this.#base}/api/generate`, {body: {model: this.ollamaNameFor(model), keep_alive: 0}, timeoutMs: 30_000});
  }

  async stop(): Promise<void> {
    await this.#engine.stop(5_000);
  }
}

/**
 * The worker's own model store: one folder per worker id, so a restarted worker (its predecessor
 * killed before it could clean up) reuses the blobs instead of leaving another copy behind. It
 * must be a real folder of this user that nobody else can read or write, or it is not used.
 */
export function workerStore(workerId: string, base = os.tmpdir()): string {
  const dir = path.join(base, `rbee-ollama-${process.getuid?.() ?? 'user'}-${workerId}`);
  try {
    fs.mkdirSync(dir, {mode: 0o700});
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new RbeeError('engine_error', `cannot create the ollama model store ${dir}: ${(error as Error).message}`, {cause: error});
    }
  }
  const stat = fs.lstatSync(dir);
  const ownUid = process.getuid?.();
  if (!stat.isDirectory() || (ownUid !== undefined && stat.uid !== ownUid) || (stat.mode & 0o077) !== 0) {
    throw new RbeeError(
      'engine_error',
      `the ollama model store ${dir} is not a private folder of this user (a link, another owner, or open permissions): remove it`,
    );
  }
  return dir;
}

/** The lines of an NDJSON body as they arrive (a chunk may end mid-line or mid-character). */
async function* ndjsonLines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let partial = '';
  for await (const chunk of body) {
    const lines = (partial + decoder.decode(chunk, {stream: true})).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() !== '') {
        yield line;
      }
    }
  }
  partial += decoder.decode();
  if (partial.trim() !== '') {
    yield partial;
  }
}
