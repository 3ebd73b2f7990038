import type {Command} from 'commander';
import {resolveApiToken} from '../config/api-token.js';
import {envFlag, hiveUrl} from '../config/env.js';
import {HiveClient} from './hive-client.js';

export type GlobalOptions = {hive?: string; token?: string; json?: boolean};

/** The options every command shares, read from the root program (flags win over RBEE_* variables). */
export function globalOptions(command: Command): GlobalOptions {
  const options = command.optsWithGlobals<GlobalOptions>();
  return {...options, json: options.json === true || envFlag('RBEE_JSON')};
}

export function hiveClient(command: Command, timeoutMs?: number): HiveClient {
  const options = globalOptions(command);
  return new HiveClient({
    url: options.hive ?? hiveUrl(),
    token: resolveApiToken({flag: options.token}),
    ...(timeoutMs === undefined ? {} : {timeoutMs}),
  });
}
