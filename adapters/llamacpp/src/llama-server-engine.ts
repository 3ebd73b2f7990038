/**
 * llama.cpp's own llama-server as the engine: rbee's /v1/infer goes to its /completion, chat to
 * its OpenAI route, and the heartbeat reads its /slots, /metrics and the process's memory.
 */
import {
  WatchedEngine,
  engineAuthorization,
  engineJson,
  engineSse,
  openAiStream,
  parsePrometheusText,
  engineMemory,
  type AdapterContext,
  type AdapterHeartbeat,
  type AdapterInferRequest,
  type GenerateResult,
} from 'rbee';

type CompletionEvent = {content?: string; stop?: boolean; tokens_predicted?: number; tokens_evaluated?: number; stop_type?: string};

export class LlamaServerEngine {
  readonly #base: string;
  readonly #device: string;
  readonly #engine: WatchedEngine;
  readonly #apiKey: string;
  readonly #modelName: string;

  private constructor(base: string, engine: WatchedEngine, context: AdapterContext) {
    this.#base = base;
    this.#device = context.device;
    this.#apiKey = context.engineKey;
    this.#modelName = context.modelName;
    this.#engine = engine;
  }

  /** `rpc`: the shard endpoints of a worker group; every layer is offloaded, spread over them (and a local GPU). */
  static start(context: AdapterContext, serverPath: string, port: number, extraArgs: string[], rpc: string[] = []): LlamaServerEngine {
    const offload = context.device !== 'cpu' || rpc.length > 0;
    const args = [
      '--model',
      context.modelPath,
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--ctx-size',
      String(context.contextSize * context.parallel),
      '--parallel',
      String(context.parallel),
      '--n-gpu-layers',
      offload ? '999' : '0',
      ...(rpc.length === 0 ? [] : ['--rpc', rpc.join(',')]),
      '--metrics',
      '--slots',
      '--no-webui',
      '--jinja',
      ...(context.threads === undefined ? [] : ['--threads', String(context.threads)]),
      ...extraArgs,
    ];
    context.log(`starting ${serverPath} on port ${port}`);
    // The key by environment (llama-server reads LLAMA_API_KEY like --api-key), so it is not in its argv.
    // One unanswered heartbeat is enough: llama-server answers /slots and /metrics at once even while it generates.
    const engine = WatchedEngine.spawn(
      context,
      {command: serverPath, args, env: {LLAMA_API_KEY: context.engineKey}},
      {name: 'llama-server', unansweredLimit: 1},
    );
    return new LlamaServerEngine(`http://127.0.0.1:${port}`, engine, context);
  }

  get pid(): number {
    return this.#engine.process.pid;
  }

  /** llama-server answers /health with 503 while it loads and 200 once the model is in. */
  async ready(): Promise<boolean> {
    this.#engine.throwIfFailed();
    try {
      const response = await fetch(`${this.#base}/health`, {signal: AbortSignal.timeout(2_000), headers: engineAuthorization(this.#apiKey)});
      return response.ok;
    } catch {
      return false;
    }
  }

  /** Tokens of a prompt (of a chat's message texts, without the template's few), by llama-server's own tokenizer. */
  async countTokens(prompt: Pick<AdapterInferRequest, 'kind' | 'prompt' | 'messages'>): Promise<number> {
    const content = prompt.kind === 'chat' ? prompt.messages.map(message => message.content).join('\n') : prompt.prompt;
    const answer = await engineJson<{tokens?: unknown[]}>(`${this.#base}/tokenize`, {body: {content}, timeoutMs: 10_000, apiKey: this.#apiKey});
    return answer.tokens?.length ?? 0;
  }

  async infer(request: AdapterInferRequest): Promise<GenerateResult> {
    this.#engine.throwIfFailed();
    return request.kind === 'chat' ? this.#chat(request) : this.#complete(request);
  }

  async heartbeat(): Promise<AdapterHeartbeat> {
    if (this.#engine.failure !== null) {
      return {error: this.#engine.failure};
    }
    const memory = await engineMemory(this.#engine.process.pid, this.#device);
    try {
      const [slots, metricsText] = await Promise.all([
        engineJson<Array<{is_processing?: boolean}>>(`${this.#base}/slots`, {timeoutMs: 2_000, apiKey: this.#apiKey}),
        fetch(`${this.#base}/metrics`, {signal: AbortSignal.timeout(2_000), headers: engineAuthorization(this.#apiKey)}).then(response => {
          if (!response.ok) {
            throw new Error(`/metrics answered ${response.status}`);
          }
          return response.text();
        }),
      ]);
      const metrics = parsePrometheusText(metricsText);
      this.#engine.answered();
      return {
        ...memory,
        batch_size: slots.filter(slot => slot.is_processing === true).length,
        queue_depth: metrics.get('llamacpp:requests_deferred') ?? 0,
      };
    } catch (error) {
      return this.#engine.unanswered(error, memory);
    }
  }

  async stop(): Promise<void> {
    await this.#engine.stop(5_000);
  }

  #sampling(request: AdapterInferRequest) {
    return {
      temperature: request.temperature,
      ...(request.topK === undefined ? {} : {top_k: request.topK}),
      ...(request.topP === undefined ? {} : {top_p: request.topP}),
      ...(request.seed === undefined ? {} : {seed: request.seed}),
      ...(request.stop.length === 0 ? {} : {stop: request.stop}),
      stream: true,
    };
  }

  async #complete(request: AdapterInferRequest): Promise<GenerateResult> {
    let text = '';
    let final: CompletionEvent = {};
    await engineSse(
      `${this.#base}/completion`,
      {prompt: request.prompt, n_predict: request.maxTokens, cache_prompt: true, ...this.#sampling(request)},
      {
        signal: request.signal,
        apiKey: this.#apiKey,
        // llama-server's native stream ends with an event that has `"stop": true`.
        isEnd: data => /"stop"\s*:\s*true/.test(data),
        onData: data => {
          const event = JSON.parse(data) as CompletionEvent;
          if (event.content !== undefined && event.content !== '') {
            text += event.content;
            request.onText(event.content);
          }
          if (event.stop === true) {
            final = event;
          }
        },
      },
    );
    const finishReason = request.signal.aborted ? 'cancelled' : final.stop_type === 'limit' ? 'length' : 'stop';
    return {text, tokensGenerated: final.tokens_predicted ?? 0, promptTokens: final.tokens_evaluated ?? 0, finishReason};
  }

  /** llama-server's OpenAI route applies the model's chat template; the shared OpenAI stream reader does the rest. */
  async #chat(request: AdapterInferRequest): Promise<GenerateResult> {
    return openAiStream(this.#base, request, {model: this.#modelName, apiKey: this.#apiKey});
  }
}
