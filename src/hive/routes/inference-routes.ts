/**
 * The hive's inference API: validates the request itself (a bad one never reaches a worker), picks
 * a worker and relays the worker's answer, streams included, byte for byte: the request's own bytes
 * go to the worker as they came (never re-serialized), and the answer's bytes come back unchanged.
 */
import type {FastifyInstance, FastifyReply, FastifyRequest} from 'fastify';
import type {z} from 'zod';
import {RbeeError} from '../../errors.js';
import {baseModelNotice, isDefaultBaseModel} from '../../models/base-model.js';
import {clientGoneSignal} from '../../http/client-gone.js';
import {isOpenAiRoute, toOpenAiError} from '../../http/error-handling.js';
import {httpRequest, type HttpAnswer} from '../../http/http-request.js';
import {validateBody} from '../../http/validate-body.js';
import {ChatCompletionRequestSchema, CompletionRequestSchema, InferRequestSchema, type ModelList} from '../../protocol/wire.js';
import {Router, servedModels} from '../router.js';
import {answerTokens, streamTokens, type RequestEventSink} from '../request-events.js';
import type {ModelsOnDemand} from '../models-on-demand.js';
import type {RelayedTokens} from '../relayed-tokens.js';
import type {Supervisor} from '../supervisor.js';
import {workerAuthorization, workerKey, workerUrl, type WorkerView} from '../worker-record.js';
import type {WorkerLinks} from '../worker-links.js';
import {relayStream} from './sse-relay.js';
import {traceStartup} from '../../startup-trace.js';

type Routed = {model?: string | undefined; stream?: boolean | undefined};

export type InferenceRouteOptions = {
  /**
   * How long a worker may leave a request without an answer before the hive asks its /health (and
   * again every such period): a worker that answers neither is taken for hung, and a request it
   * has not started answering goes to another worker.
   */
  workerTimeoutMs: number;
  log: (message: string) => void;
  /** Where `request` events go (for dashboards); they are built only while someone follows them. */
  events?: RequestEventSink | undefined;
  /** Starts catalogue models a request names when nothing serves them. */
  onDemand?: ModelsOnDemand | undefined;
  /** Where the tokens relayed are counted, per worker (what `rbee worker list` shows at once). */
  relayed?: RelayedTokens | undefined;
  /** The workers' links: generation requests go by them where a worker serves one, else by HTTP. */
  links?: WorkerLinks | undefined;
};

/** Called with the tokens relayed so far (a whole answer once, a stream as it goes). */
type TokenTap = (tokens: number) => void;

/** Progress events of a stream: at most one a second per request. */
const progressEveryMs = 1_000;

/**
 * The one place a hive-to-worker request is built, so whatever a worker requires of its callers goes
 * here: every route of a worker's port, /health included, answers 401 without the worker's key.
 */
export function workerFetch(
  worker: WorkerView,
  path: string,
  init: {method: 'GET' | 'POST' | 'DELETE'; body?: Buffer; signal: AbortSignal},
): Promise<HttpAnswer> {
  const headers: Record<string, string> = {
    ...(init.body === undefined ? {} : {'content-type': 'application/json'}),
    ...workerAuthorization(worker),
  };
  return httpRequest(`${workerUrl(worker)}${path}`, {method: init.method, headers, ...(init.body === undefined ? {} : {body: init.body}), signal: init.signal});
}

async function answersHealth(worker: WorkerView, timeoutMs: number): Promise<boolean> {
  try {
    const response = await workerFetch(worker, '/health', {method: 'GET', signal: AbortSignal.timeout(timeoutMs)});
    response.cancel();
    return true; // any answer, 503 included: the process is alive and serving HTTP
  } catch {
    return false;
  }
}

type Sent = {kind: 'response'; response: HttpAnswer} | {kind: 'failed'; error: RbeeError; hung: boolean};

/**
 * POSTs the request to a worker and waits for its answer to begin, watching the worker meanwhile:
 * a worker that has not answered within the timeout is asked for its /health, and one that does
 * not answer that either (SIGSTOPped, wedged) is given up on at once rather than at its missed
 * heartbeats. `cancel` aborts the request (and, later, the relay of its answer) when the client goes.
 */
async function sendToWorker(
  worker: WorkerView,
  path: string,
  body: Buffer,
  cancel: AbortController,
  timeoutMs: number,
  links: WorkerLinks | undefined,
): Promise<Sent> {
  let answered = false;
  let hung = false;
  let timer: NodeJS.Timeout | undefined;
  const watch = () => {
    timer = setTimeout(() => {
      void answersHealth(worker, timeoutMs).then(alive => {
        if (answered) {
          return;
        }
        if (alive) {
          watch();
        } else {
          hung = true;
          cancel.abort(new Error('worker hung'));
        }
      });
    }, timeoutMs);
  };
  watch();
  try {
    const linked = links === undefined ? null : await links.request({id: worker.id, key: workerKey(worker)}, path, body, cancel.signal);
    return {kind: 'response', response: linked ?? (await workerFetch(worker, path, {method: 'POST', body, signal: cancel.signal}))};
  } catch (error) {
    const message = hung
      ? `worker ${worker.id} did not answer within ${timeoutMs} ms, nor did its /health: it looks hung`
      : `worker ${worker.id} did not answer: ${(error as Error).message}`;
    return {kind: 'failed', error: new RbeeError(hung ? 'timeout' : 'upstream_error', message, {cause: error}), hung};
  } finally {
    answered = true;
    clearTimeout(timer);
  }
}

async function relayWhole(reply: FastifyReply, worker: WorkerView, upstream: HttpAnswer, tap: TokenTap): Promise<void> {
  let text: string;
  try {
    text = await upstream.text();
  } catch (error) {
    throw new RbeeError('upstream_error', `worker ${worker.id} broke off its answer: ${(error as Error).message}`, {cause: error});
  }
  if (upstream.ok) {
    tap(answerTokens(text));
  }
  const retryAfter = upstream.header('retry-after');
  if (retryAfter !== undefined) {
    void reply.header('retry-after', retryAfter);
  }
  await reply
    .status(upstream.status)
    .header('content-type', upstream.header('content-type') ?? 'application/json')
    .send(text);
}

type RawBodyRequest = FastifyRequest & {rawBody?: Buffer};

export function registerInferenceRoutes(app: FastifyInstance, supervisor: Supervisor, options: InferenceRouteOptions): void {
  const router = new Router(supervisor);
  /** Workers that just failed to answer: passed over while another serves, until their next heartbeat. */
  const unanswered = new Map<string, number>();
  const avoid = (): Set<string> => {
    for (const [id, since] of unanswered) {
      const heard = supervisor.workers.get(id)?.lastHeartbeatAt?.getTime() ?? 0;
      if (heard > since || !supervisor.workers.has(id)) {
        unanswered.delete(id);
      }
    }
    return new Set(unanswered.keys());
  };

  /**
   * One try on one worker: the answer relayed ('done'), or the worker to try next when this one
   * could not take the request (unreachable, hung, or refusing for now with a 503) and `next` offers one.
   */
  async function attempt(
    worker: WorkerView,
    path: string,
    raw: Buffer,
    streamed: boolean,
    reply: FastifyReply,
    clientGone: AbortSignal,
    next: () => WorkerView | null,
  ): Promise<'done' | WorkerView> {
    const cancel = new AbortController();
    const onGone = () => cancel.abort(clientGone.reason);
    clientGone.addEventListener('abort', onGone, {once: true});
    const release = supervisor.requestStarted(worker.id);
    options.onDemand?.routed(worker.id);
    // Events are per worker tried: a request retried on another worker ends (without a status) on the first.
    const started = Date.now();
    const following = options.events?.active() === true ? options.events : null;
    let pending = 0;
    let lastProgress = started;
    let status: number | undefined;
    const event = (phase: 'started' | 'progress' | 'ended', extra: {status?: number} = {}) => {
      following?.publish({
        type: 'request',
        at: new Date().toISOString(),
        worker_id: worker.id,
        phase,
        in_flight: worker.inFlight,
        ...(phase === 'started' ? {} : {tokens: pending}),
        ...(phase === 'ended' ? {duration_ms: Date.now() - started} : {}),
        ...extra,
      });
      pending = 0;
    };
    const tap: TokenTap = tokens => {
      options.relayed?.add(worker.id, tokens);
      if (following !== null) {
        pending += tokens;
        if (Date.now() - lastProgress >= progressEveryMs) {
          lastProgress = Date.now();
          event('progress');
        }
      }
    };
    event('started');
    try {
      traceStartup(worker.id, 'request relayed by the hive');
      const sent = await sendToWorker(worker, path, raw, cancel, options.workerTimeoutMs, options.links);
      traceStartup(worker.id, "worker's answer began");
      if (sent.kind === 'failed') {
        if (sent.hung) {
          unanswered.set(worker.id, Date.now());
        }
        const other = next();
        if (other === null) {
          throw sent.error;
        }
        options.log(`${sent.error.message}; the request goes to ${other.id}`);
        return other;
      }
      const upstream = sent.response;
      // A worker that refuses for now (queue full, draining, loading) leaves the request to another.
      if (upstream.status === 503) {
        const other = next();
        if (other !== null) {
          upstream.cancel();
          return other;
        }
      }
      status = upstream.status;
      if (streamed && upstream.ok) {
        const openAi = isOpenAiRoute(path);
        let relayed = false;
        await relayStream(upstream, reply, {
          openAi,
          onChunk: chunk => {
            if (!relayed) {
              relayed = true;
              traceStartup(worker.id, "the answer's first bytes relayed");
            }
            tap(streamTokens(path, chunk));
          },
          cutOff: reason => {
            const error = new RbeeError(
              'worker_failed',
              `worker ${worker.id}'s stream ended before its end marker (${reason}): the worker or its engine failed mid-answer`,
            );
            return openAi ? toOpenAiError(error) : {type: 'error', error: {code: error.code, message: error.message}};
          },
        });
      } else {
        await relayWhole(reply, worker, upstream, tap);
      }
      return 'done';
    } finally {
      release();
      clientGone.removeEventListener('abort', onGone);
      event('ended', status === undefined ? {} : {status});
    }
  }

  function route<S extends z.ZodType<Routed>>(scope: FastifyInstance, path: string, schema: S, what: string): void {
    scope.post(path, async (request: RawBodyRequest, reply) => {
      traceStartup('hive', 'request received');
      const body = validateBody(schema, request.body, what);
      const raw = request.rawBody ?? Buffer.from(JSON.stringify(request.body));
      const clientGone = clientGoneSignal(reply.raw);
      const tried = new Set<string>();
      // One retry, on another ready worker, for a request no worker has begun to answer.
      const next = () => (tried.size < 2 && !clientGone.aborted ? router.pickOther(body.model, tried, avoid()) : null);
      if (options.onDemand?.has(body.model) === true) {
        // Held, not failed, while its model starts: the client sees nothing until the answer begins.
        await options.onDemand.ensure(body.model, clientGone);
      }
      let worker = router.pick(body.model, avoid());
      for (;;) {
        tried.add(worker.id);
        const outcome = await attempt(worker, path, raw, body.stream === true, reply, clientGone, next);
        if (outcome === 'done') {
          return;
        }
        worker = outcome;
      }
    });
  }

  void app.register(async scope => {
    // The body's own bytes are kept for the worker: parsing is safe at any depth, re-serializing is not.
    const parseJson = scope.getDefaultJsonParser('error', 'error');
    scope.addContentTypeParser('application/json', {parseAs: 'buffer'}, (request: RawBodyRequest, body: Buffer, done) => {
      request.rawBody = body;
      // Fastify's JSON parser answers through `done`; what it returns is nothing to wait for.
      void parseJson(request, body.toString('utf8'), done);
    });
    route(scope, '/v1/infer', InferRequestSchema, 'infer request');
    route(scope, '/v1/chat/completions', ChatCompletionRequestSchema, 'chat completion request');
    route(scope, '/v1/completions', CompletionRequestSchema, 'completion request');
  });

  // Catalogue names are listed too: a client may ask for one though nothing serves it yet.
  app.get('/v1/models', async (): Promise<ModelList> => ({
    object: 'list',
    data: [...new Set([...servedModels(supervisor), ...(options.onDemand?.names() ?? [])])].sort().map(id => {
      const base = [...supervisor.workers.values()].some(record => record.modelName === id && isDefaultBaseModel(record.modelPath));
      return {id, object: 'model' as const, created: 0, owned_by: 'rbee', ...(base ? {base_model: true, notice: baseModelNotice} : {})};
    }),
  }));
}
