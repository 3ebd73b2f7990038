/**
 * A worker group's shard: llama.cpp's ggml-rpc-server, which holds whatever layers its coordinator's
 * llama-server sends it and computes them on its device. It serves no requests of its own.
 */
import net from 'node:net';
import {WatchedEngine, engineMemory, type AdapterContext, type AdapterHeartbeat} from 'rbee';

function splitEndpoint(endpoint: string): {host: string; port: number} {
  const colon = endpoint.lastIndexOf(':');
  return {host: endpoint.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(endpoint.slice(colon + 1))};
}

/** Whether something accepts TCP connections at `endpoint` now. */
export function acceptsConnections(endpoint: string, timeoutMs = 1_000): Promise<boolean> {
  const {host, port} = splitEndpoint(endpoint);
  return new Promise(resolve => {
    const socket = net.connect({host, port});
    const done = (accepted: boolean) => {
      socket.destroy();
      resolve(accepted);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export class RpcShardEngine {
  readonly #endpoint: string;
  readonly #device: string;
  readonly #engine: WatchedEngine;

  private constructor(endpoint: string, engine: WatchedEngine, context: AdapterContext) {
    this.#endpoint = endpoint;
    this.#device = context.device;
    this.#engine = engine;
  }

  static start(context: AdapterContext, binary: string, endpoint: string): RpcShardEngine {
    const {host, port} = splitEndpoint(endpoint);
    const args = ['--host', host, '--port', String(port), ...(context.threads === undefined ? [] : ['--threads', String(context.threads)])];
    context.log(`starting ${binary} for group ${context.group?.groupId ?? '?'} on ${endpoint}`);
    return new RpcShardEngine(endpoint, WatchedEngine.spawn(context, {command: binary, args}, {name: 'ggml-rpc-server'}), context);
  }

  async ready(): Promise<boolean> {
    this.#engine.throwIfFailed();
    return acceptsConnections(this.#endpoint);
  }

  async heartbeat(): Promise<AdapterHeartbeat> {
    if (this.#engine.failure !== null) {
      return {error: this.#engine.failure};
    }
    return engineMemory(this.#engine.process.pid, this.#device);
  }

  async stop(): Promise<void> {
    await this.#engine.stop(3_000);
  }
}
