/**
 * Every failure rbee reports on purpose is an RbeeError: a stable `code` that scripts and the
 * wire format can rely on, an HTTP status for the servers, and the original error as `cause`.
 * It lives in the protocol module because the codes are part of the wire (`{error: {code}}`) and a
 * client program catching the hive client's errors must get this very class, with nothing else of rbee.
 */
export type ErrorCode =
  | 'invalid_request'
  | 'invalid_json'
  | 'context_length_exceeded'
  | 'unauthorized'
  | 'not_found'
  | 'model_not_found'
  | 'model_unavailable'
  | 'worker_not_found'
  | 'group_not_found'
  | 'worker_failed'
  | 'worker_not_ready'
  | 'device_unknown'
  | 'device_unsupported'
  | 'insufficient_memory'
  | 'port_in_use'
  | 'home_locked'
  | 'bind_refused'
  | 'hive_unreachable'
  | 'download_failed'
  | 'checksum_mismatch'
  | 'damaged_cache_entry'
  | 'engine_error'
  | 'adapter_error'
  | 'upstream_error'
  /** A peer answered, but not in rbee's wire format (a field missing or of the wrong type). */
  | 'invalid_response'
  | 'timeout'
  | 'internal';

const statusByCode: Record<ErrorCode, number> = {
  invalid_request: 400,
  invalid_json: 400,
  context_length_exceeded: 400,
  unauthorized: 401,
  not_found: 404,
  model_not_found: 404,
  model_unavailable: 503,
  worker_not_found: 404,
  group_not_found: 404,
  worker_failed: 500,
  worker_not_ready: 503,
  device_unknown: 400,
  device_unsupported: 400,
  insufficient_memory: 409,
  port_in_use: 409,
  home_locked: 409,
  bind_refused: 400,
  hive_unreachable: 502,
  download_failed: 502,
  checksum_mismatch: 502,
  damaged_cache_entry: 500,
  engine_error: 500,
  adapter_error: 502,
  upstream_error: 502,
  invalid_response: 502,
  timeout: 504,
  internal: 500,
};

export class RbeeError extends Error {
  override readonly name = 'RbeeError';
  readonly code: ErrorCode;
  readonly status: number;
  /** The request field at fault, when one is (OpenAI clients read it as `param`). */
  readonly field: string | undefined;

  constructor(code: ErrorCode, message: string, options: {cause?: unknown; status?: number; field?: string | undefined} = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause});
    this.code = code;
    this.status = options.status ?? statusByCode[code];
    this.field = options.field;
  }

  toJSON(): {error: {code: ErrorCode; message: string}} {
    return {error: {code: this.code, message: this.message}};
  }
}

export function isRbeeError(value: unknown): value is RbeeError {
  return value instanceof RbeeError;
}

/** Turns anything thrown into an RbeeError, keeping the original as `cause`. */
export function toRbeeError(value: unknown, fallback: ErrorCode = 'internal'): RbeeError {
  if (value instanceof RbeeError) {
    return value;
  }
  const message = value instanceof Error ? value.message : String(value);
  return new RbeeError(fallback, message, {cause: value});
}
