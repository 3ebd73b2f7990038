/**
 * An engine subprocess whose unexpected exit is a failure to report at once, and whose silence
 * at heartbeats is a failure after a few in a row: what every adapter with an engine process
 * (llama-server, ggml-rpc-server, vLLM, trtllm-serve, a plugin's) needs. A stop asked for is not
 * a failure.
 */
import {RbeeError} from '../errors.js';
import type {AdapterContext, AdapterHeartbeat, EngineProcess} from './adapter-api.js';

export type WatchedEngineOptions = {
  /** How the engine is named in failures, e.g. "vllm". */
  name: string;
  /** Heartbeats in a row the engine may leave unanswered while its process lives before it counts as hung (default 3). */
  unansweredLimit?: number;
  /** Called once the process has exited, whatever the reason (to remove files it was given, say). */
  onExit?: () => void;
};

export class WatchedEngine {
  readonly process: EngineProcess;
  readonly #name: string;
  readonly #context: Pick<AdapterContext, 'reportFailure' | 'log'>;
  readonly #unansweredLimit: number;
  #failure: string | null = null;
  #stopping = false;
  #unanswered = 0;

  constructor(engine: EngineProcess, context: Pick<AdapterContext, 'reportFailure' | 'log'>, options: WatchedEngineOptions) {
    this.process = engine;
    this.#name = options.name;
    this.#context = context;
    this.#unansweredLimit = options.unansweredLimit ?? 3;
    void engine.exited.then(exit => {
      if (!this.#stopping) {
        const how = exit.signal === null ? `exited with code ${exit.code}` : `was killed by ${exit.signal}`;
        const output = engine.recentOutput().split('\n').slice(-3).join(' | ');
        this.#failure = `${this.#name} (pid ${engine.pid}) ${how}${output === '' ? '' : `: ${output}`}`;
        // The hive hears of it now, not at the next heartbeat: a group's other members go at once too.
        context.reportFailure(this.#failure);
      }
      options.onExit?.();
    });
  }

  /** Starts the engine through the context (its process group, its log) and watches it. */
  static spawn(context: AdapterContext, launch: {command: string; args: string[]; env?: Record<string, string>}, options: WatchedEngineOptions): WatchedEngine {
    return new WatchedEngine(context.spawnEngine(launch), context, options);
  }

  get pid(): number {
    return this.process.pid;
  }

  /** Why the engine failed, once it has; null while it runs (or after a stop that was asked for). */
  get failure(): string | null {
    return this.#failure;
  }

  throwIfFailed(): void {
    if (this.#failure !== null) {
      throw new RbeeError('engine_error', this.#failure);
    }
  }

  /**
   * After a request failed (a dropped connection is most often the engine dying): waits up to
   * `waitMs` for the exit to land, then throws the engine's failure if there is one, so the
   * client hears why and not just "terminated".
   */
  async explain(error: unknown, waitMs = 1_000): Promise<never> {
    await Promise.race([this.process.exited, new Promise(resolve => setTimeout(resolve, waitMs).unref())]);
    this.throwIfFailed();
    throw error;
  }

  /** A heartbeat's queries answered: the count of unanswered ones starts again. */
  answered(): void {
    this.#unanswered = 0;
  }

  /**
   * A heartbeat's queries went unanswered while the process lives: logged, and after the limit in
   * a row, reported as the engine's error (a hung engine). `known` is what the heartbeat still has.
   */
  unanswered(error: unknown, known: AdapterHeartbeat = {}): AdapterHeartbeat {
    if (this.#failure !== null) {
      return {error: this.#failure};
    }
    this.#unanswered++;
    const message = `${this.#name} is not answering (${this.#unanswered} heartbeat(s) in a row): ${(error as Error).message}`;
    this.#context.log(message);
    return this.#unanswered >= this.#unansweredLimit ? {...known, error: message} : known;
  }

  /** SIGTERM, up to `graceMs` to exit, then SIGKILL (the worker kills its whole process group afterwards anyway). */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    this.process.kill('SIGTERM');
    await Promise.race([this.process.exited, new Promise(resolve => setTimeout(resolve, graceMs).unref())]);
    this.process.kill('SIGKILL');
  }
}
