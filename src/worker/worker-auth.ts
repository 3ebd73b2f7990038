/**
 * A worker's own port answers only its hive (or whoever the hive gave the worker's key). The hive
 * passes the heartbeat secret by environment, never argv (argv is world-readable in /proc); the
 * worker derives its key from it and takes both out of its environment at once, so the engines
 * and plugins it starts do not inherit them.
 */
import type {FastifyInstance} from 'fastify';
import {z} from 'zod';
import {RbeeError} from '../errors.js';
import {bearer, sameSecret, workerKeyOf} from '../http/secrets.js';

export const workerSecretVariable = 'RBEE_WORKER_SECRET';
/** A coordinator's shards' keys, `{worker_id: key}` as JSON: it probes their /health. */
export const shardKeysVariable = 'RBEE_GROUP_SHARD_KEYS';
/** The secret a group launch's members share (their engines' own rank connections). */
export const groupSecretVariable = 'RBEE_GROUP_SECRET';

export type WorkerCredentials = {
  /** The heartbeat secret (empty for a standalone worker). */
  secret: string;
  /** What its HTTP server demands; null for a standalone worker (no hive, so no secret). */
  key: string | null;
  shardKeys: Record<string, string>;
  groupSecret: string;
};

const ShardKeysSchema = z.record(z.string(), z.string().min(1));

/** Reads the worker's credentials from the environment and removes them from it. */
export function takeWorkerCredentials(env: NodeJS.ProcessEnv = process.env): WorkerCredentials {
  const secret = env[workerSecretVariable] ?? '';
  const keysText = env[shardKeysVariable];
  const groupSecret = env[groupSecretVariable] ?? '';
  delete env[workerSecretVariable];
  delete env[shardKeysVariable];
  delete env[groupSecretVariable];
  let shardKeys: Record<string, string> = {};
  if (keysText !== undefined && keysText !== '') {
    let value: unknown;
    try {
      value = JSON.parse(keysText);
    } catch (error) {
      throw new RbeeError('invalid_request', `${shardKeysVariable}: not JSON: ${(error as Error).message}`, {cause: error});
    }
    const parsed = ShardKeysSchema.safeParse(value);
    if (!parsed.success) {
      throw new RbeeError('invalid_request', `${shardKeysVariable}: expected {"<worker id>": "<key>"}`);
    }
    shardKeys = parsed.data;
  }
  return {secret, key: secret === '' ? null : workerKeyOf(secret), shardKeys, groupSecret};
}

/** Every route of the worker's server answers 401 without `Authorization: Bearer <key>`. */
export function requireWorkerKey(app: FastifyInstance, key: string): void {
  app.addHook('onRequest', async request => {
    if (!sameSecret(bearer(request.headers.authorization), key)) {
      throw new RbeeError('unauthorized', 'this worker answers only its hive: route requests through the hive (or send the worker key the hive holds)');
    }
  });
}
