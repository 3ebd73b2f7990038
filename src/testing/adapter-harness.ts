/**
 * Drives one adapter through its lifecycle as a worker would (start, ready polling, infer,
 * heartbeat, stop) without a hive or a worker process, so a plugin's own tests exercise its real
 * engine. The context it hands the adapter is the worker's: engines are spawned the same way, and
 * what the adapter reports (load progress, failures, log lines) is recorded for the test to check.
 */
import {
  assertAdapter,
  checkInferResult,
  checkStreamedText,
  type AdapterContext,
  type AdapterGroup,
  type AdapterHeartbeat,
  type AdapterInferRequest,
  type GenerateResult,
  type RbeeAdapter,
} from '../adapters/adapter-api.js';
import {spawnEngineProcess} from '../adapters/engine-process.js';
import type {EngineProcess} from '../adapters/adapter-api.js';
import {RbeeError, toRbeeError} from '../errors.js';
import {freePort} from '../http/free-port.js';
import {randomSecret} from '../http/secrets.js';

export type AdapterHarnessOptions = {
  /** What `--model` resolved to: a GGUF file or a model folder (whatever the adapter loads). */
  modelPath: string;
  modelName?: string;
  device?: string;
  contextSize?: number;
  threads?: number;
  parallel?: number;
  /** Options for the adapter's factory (as `--adapter-option` or the config would give them). */
  adapterOptions?: Record<string, unknown>;
  /** How long `start()` waits for `ready()` to say true (default: the adapter's `readyTimeoutMs`, else 120 s). */
  readyTimeoutMs?: number;
  /** How often `ready()` is asked, as the worker does (default 200 ms). */
  readyPollMs?: number;
  group?: AdapterGroup;
  /** Where the adapter's log lines and its engines' output go, besides `logs` (default: nowhere). */
  log?: (line: string) => void;
};

/** A generation: the prompt is all most tests give; the rest has the worker's defaults. */
export type HarnessInferInput = Partial<Omit<AdapterInferRequest, 'onText' | 'signal'>> & {signal?: AbortSignal};

export type HarnessInferResult = GenerateResult & {
  /** The pieces `onText` received, in order: what a streaming client would have seen. */
  streamed: string[];
};

export type AdapterHarness = {
  readonly adapter: RbeeAdapter;
  readonly context: AdapterContext;
  /** Every fraction passed to `reportLoadProgress`. */
  readonly progress: readonly number[];
  /** Every reason passed to `reportFailure`. */
  readonly failures: readonly string[];
  /** The adapter's `context.log` lines and its engines' output lines. */
  readonly logs: readonly string[];
  /** `start()`, then `ready()` every poll until true; rejects if start throws, the adapter reports a failure, or time runs out. */
  start(): Promise<void>;
  infer(input?: HarnessInferInput): Promise<HarnessInferResult>;
  heartbeat(): Promise<AdapterHeartbeat>;
  /** `stop()`, then SIGKILL for any engine the adapter started and left running. */
  stop(): Promise<void>;
};

type Factory = (options?: Record<string, unknown>) => RbeeAdapter | Promise<RbeeAdapter>;

const harnessWorkerId = 'worker-harness';

/** Builds the adapter (from its factory, with `adapterOptions`, or as given) and its context. */
export async function createAdapterHarness(adapterOrFactory: RbeeAdapter | Factory, options: AdapterHarnessOptions): Promise<AdapterHarness> {
  const built = typeof adapterOrFactory === 'function' ? await adapterOrFactory(options.adapterOptions) : adapterOrFactory;
  const adapter = assertAdapter(built, 'the adapter under test');
  const progress: number[] = [];
  const failures: string[] = [];
  const logs: string[] = [];
  const engines: EngineProcess[] = [];
  const record = (line: string) => {
    logs.push(line);
    options.log?.(line);
  };
  const context: AdapterContext = {
    workerId: harnessWorkerId,
    modelPath: options.modelPath,
    modelName: options.modelName ?? options.modelPath,
    device: options.device ?? 'cpu',
    contextSize: options.contextSize ?? 4_096,
    threads: options.threads,
    parallel: options.parallel ?? 1,
    log: message => record(`${adapter.name}: ${message}`),
    freePort: () => freePort(),
    spawnEngine: spawn => {
      const engine = spawnEngineProcess({...spawn, onOutput: line => record(`[engine] ${line}`)});
      engines.push(engine);
      return engine;
    },
    reportLoadProgress: fraction => {
      progress.push(fraction);
    },
    reportFailure: reason => {
      failures.push(reason);
    },
    // A fresh key per harness, as a worker makes one per engine: an engine that demands it is tested as it runs.
    engineKey: randomSecret(),
    ...(options.group === undefined ? {} : {group: options.group}),
  };
  const readyTimeoutMs = options.readyTimeoutMs ?? adapter.readyTimeoutMs ?? 120_000;
  const readyPollMs = options.readyPollMs ?? 200;

  return {
    adapter,
    context,
    progress,
    failures,
    logs,
    async start() {
      const deadline = Date.now() + readyTimeoutMs;
      try {
        await adapter.start(context);
      } catch (error) {
        throw new RbeeError('engine_error', `adapter ${adapter.name} failed to start: ${toRbeeError(error, 'engine_error').message}`, {cause: error});
      }
      while (adapter.ready !== undefined && !(await adapter.ready(context))) {
        if (failures.length > 0) {
          throw new RbeeError('engine_error', `adapter ${adapter.name} reported a failure while loading: ${failures.at(-1)}`);
        }
        if (Date.now() > deadline) {
          throw new RbeeError('timeout', `adapter ${adapter.name} was not ready after ${readyTimeoutMs} ms (last log: ${logs.at(-1) ?? 'none'})`);
        }
        await new Promise(resolve => setTimeout(resolve, readyPollMs));
      }
    },
    async infer(input = {}) {
      const streamed: string[] = [];
      // Checked as the worker checks them: a result or a streamed piece the worker would refuse fails here too.
      let badText: Error | null = null;
      const answer: unknown = await adapter.infer(
        {
          kind: input.kind ?? 'complete',
          prompt: input.prompt ?? '',
          messages: input.messages ?? [],
          maxTokens: input.maxTokens ?? 16,
          temperature: input.temperature ?? 0,
          stop: input.stop ?? [],
          ...(input.topK === undefined ? {} : {topK: input.topK}),
          ...(input.topP === undefined ? {} : {topP: input.topP}),
          ...(input.seed === undefined ? {} : {seed: input.seed}),
          signal: input.signal ?? new AbortController().signal,
          onText: text => {
            badText ??= checkStreamedText(adapter.name, text);
            streamed.push(text);
          },
        },
        context,
      );
      if (badText !== null) {
        throw badText;
      }
      return {...checkInferResult(adapter.name, answer), streamed};
    },
    async heartbeat() {
      return adapter.heartbeat === undefined ? {} : adapter.heartbeat(context);
    },
    async stop() {
      try {
        await adapter.stop(context);
      } finally {
        for (const engine of engines) {
          engine.kill('SIGKILL');
        }
        await Promise.all(engines.map(engine => engine.exited));
      }
    },
  };
}
