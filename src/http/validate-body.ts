import type {z} from 'zod';
import {RbeeError} from '../errors.js';
import {parseWire} from '../protocol/parse.js';

/** Validates a request body against its wire schema or throws a 400 that names the field. */
export function validateBody<S extends z.ZodType>(schema: S, body: unknown, what: string): z.output<S> {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new RbeeError('invalid_request', `invalid ${what}: expected a JSON object`);
  }
  const parsed = parseWire(schema, body, what);
  if (!parsed.ok) {
    const field = parsed.issues[0]?.field;
    throw new RbeeError('invalid_request', parsed.message, {field: field === '(body)' ? undefined : field});
  }
  return parsed.value;
}
