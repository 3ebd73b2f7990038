/**
 * The API token, one rule wherever it comes from (`--token`, RBEE_TOKEN, `hive.token` in the
 * config file): at least 16 characters. A shorter one is a usage error naming its source rather
 * than a token that a guess could match, or an empty one that passes for "set".
 */
import {z} from 'zod';
import {RbeeError} from '../errors.js';

export const minApiTokenLength = 16;

export const ApiTokenSchema = z.string().min(minApiTokenLength, `at least ${minApiTokenLength} characters`);

/** Throws a usage error (exit 2) naming `source` unless `token` follows the rule. */
export function checkApiToken(token: string, source: string): string {
  if (token.length < minApiTokenLength) {
    const what = token === '' ? 'is empty' : `has ${token.length} character${token.length === 1 ? '' : 's'}`;
    throw new RbeeError('invalid_request', `${source}: the API token ${what}; it needs at least ${minApiTokenLength} (e.g. \`openssl rand -hex 24\`)`);
  }
  return token;
}

export type TokenSources = {flag?: string | undefined; env?: NodeJS.ProcessEnv; config?: {token?: string | undefined; path: string | null}};

/**
 * The token in force, flag over RBEE_TOKEN over the config file, checked against the rule. An
 * unset or empty RBEE_TOKEN counts as not given, like every RBEE_* variable; `--token ''` is refused.
 */
export function resolveApiToken(sources: TokenSources): string | undefined {
  if (sources.flag !== undefined) {
    return checkApiToken(sources.flag, '--token');
  }
  const env = (sources.env ?? process.env).RBEE_TOKEN;
  if (env !== undefined && env !== '') {
    return checkApiToken(env, 'RBEE_TOKEN');
  }
  const fromConfig = sources.config?.token;
  if (fromConfig !== undefined) {
    return checkApiToken(fromConfig, `hive.token in ${sources.config?.path ?? 'the config'}`);
  }
  return undefined;
}
