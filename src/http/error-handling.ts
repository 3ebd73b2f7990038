import type {FastifyError, FastifyInstance, FastifyReply, FastifyRequest} from 'fastify';
import {isRbeeError, RbeeError} from '../errors.js';
import type {OpenAiErrorBody} from '../protocol/wire.js';

/** Routes whose clients are OpenAI SDKs: their errors take OpenAI's shape, everywhere else rbee's. */
const openAiRoutes = new Set(['/v1/chat/completions', '/v1/completions', '/v1/models']);

export function isOpenAiRoute(url: string | undefined): boolean {
  return url !== undefined && openAiRoutes.has(url.split('?')[0]!);
}

function openAiType(status: number): string {
  if (status === 401) {
    return 'authentication_error';
  }
  if (status === 403) {
    return 'permission_error';
  }
  if (status === 404) {
    return 'not_found_error';
  }
  if (status === 429) {
    return 'rate_limit_error';
  }
  return status < 500 ? 'invalid_request_error' : 'server_error';
}

/** An error as the OpenAI SDKs expect it: `{error: {message, type, param, code}}`. */
export function toOpenAiError(error: RbeeError): OpenAiErrorBody {
  return {error: {message: error.message, type: openAiType(error.status), param: error.field ?? null, code: error.code}};
}

/** The error body for a route: OpenAI's shape on the OpenAI routes, rbee's `{error: {code, message}}` elsewhere. */
export function errorBody(error: RbeeError, url: string | undefined): OpenAiErrorBody | ReturnType<RbeeError['toJSON']> {
  return isOpenAiRoute(url) ? toOpenAiError(error) : error.toJSON();
}

type FastifyErrorLike = Partial<FastifyError> & {message: string};

/** What fastify's own errors (bad JSON, too large, wrong content type) mean on rbee's wire. */
function fromFastify(error: FastifyErrorLike): RbeeError {
  const status = error.statusCode ?? 500;
  if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error instanceof SyntaxError) {
    return new RbeeError('invalid_json', `request body is not valid JSON: ${error.message}`, {cause: error, status: 400});
  }
  if (error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
    return new RbeeError('invalid_json', 'request body is empty; expected a JSON object', {cause: error, status: 400});
  }
  if (status >= 400 && status < 500) {
    return new RbeeError('invalid_request', error.message, {cause: error, status});
  }
  return new RbeeError('internal', error.message, {cause: error, status: 500});
}

/** For fastify's `frameworkErrors`: errors raised before routing (a malformed URL) get rbee's format too. */
export function frameworkErrorHandler(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const rbeeError = new RbeeError('invalid_request', `bad request URL: ${error.message}`, {cause: error, status: 400});
  void reply.status(400).send(rbeeError.toJSON());
}

/** How an error is answered on `url`: its status, body and headers (a 503 says when to come back). */
export function errorReply(error: unknown, url: string | undefined): {status: number; body: unknown; headers: Record<string, string>; error: RbeeError} {
  const rbeeError = isRbeeError(error) ? error : fromFastify(error as FastifyErrorLike);
  return {
    status: rbeeError.status,
    body: errorBody(rbeeError, url),
    headers: rbeeError.status === 503 ? {'retry-after': '1'} : {},
    error: rbeeError,
  };
}

/**
 * Every error leaves as `{error: {code, message}}` with a 4xx for the caller's mistakes, so a
 * client can tell them apart from our failures, and no route can leak a stack trace.
 */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyErrorLike, request, reply) => {
    const answer = errorReply(error, request.routeOptions.url ?? request.url);
    if (answer.status >= 500) {
      request.log.error({err: error}, answer.error.message);
    }
    void reply.status(answer.status).headers(answer.headers).send(answer.body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send(new RbeeError('not_found', `no route ${request.method} ${request.url}`).toJSON());
  });
}
