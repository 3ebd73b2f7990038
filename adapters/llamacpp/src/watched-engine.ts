/**
 * An engine subprocess whose unexpected exit is a failure to report: what llama-server and
 * ggml-rpc-server share. A stop asked for is not a failure.
 */
import {RbeeError, type AdapterContext, type EngineProcess} from 'rbee';

export class WatchedEngine {
  readonly process: EngineProcess;
  #failure: string | null = null;
  #stopping = false;

  constructor(name: string, engine: EngineProcess, context: Pick<AdapterContext, 'reportFailure'>) {
    this.process = engine;
    void engine.exited.then(exit => {
      if (!this.#stopping) {
        const how = exit.signal === null ? `exited with code ${exit.code}` : `was killed by ${exit.signal}`;
        this.#failure = `${name} ${how}: ${engine.recentOutput().split('\n').slice(-3).join(' | ')}`;
        // The hive hears of it now, not at the next heartbeat: a group's other members go at once too.
        context.reportFailure(this.#failure);
      }
    });
  }

  get failure(): string | null {
    return this.#failure;
  }

  throwIfFailed(): void {
    if (this.#failure !== null) {
      throw new RbeeError('engine_error', this.#failure);
    }
  }

  /** SIGTERM, up to `graceMs` to exit, then SIGKILL. */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    this.process.kill('SIGTERM');
    await Promise.race([this.process.exited, new Promise(resolve => setTimeout(resolve, graceMs).unref())]);
    this.process.kill('SIGKILL');
  }
}
