import type {Command} from 'commander';
import {resolveApiToken} from '../config/api-token.js';
import {envFlag, envValue, hiveUrl, rbeeHome} from '../config/env.js';
import {runningHive} from '../hive/home-owner.js';
import {HiveClient} from '../protocol/hive-client.js';

export type GlobalOptions = {hive?: string; token?: string; json?: boolean};

/** The options every command shares, read from the root program (flags win over RBEE_* variables). */
export function globalOptions(command: Command): GlobalOptions {
  const options = command.optsWithGlobals<GlobalOptions>();
  return {...options, json: options.json === true || envFlag('RBEE_JSON')};
}

/** Where the hive is: --hive, else RBEE_HIVE_URL, else the one running on this RBEE_HOME (its hive.json), else the default port. */
export function hiveLocation(hive: string | undefined): string {
  return hive ?? envValue('RBEE_HIVE_URL') ?? runningHive(rbeeHome())?.url ?? hiveUrl();
}

export function hiveClient(command: Command, timeoutMs?: number): HiveClient {
  const options = globalOptions(command);
  return new HiveClient({
    url: hiveLocation(options.hive),
    token: resolveApiToken({flag: options.token}),
    unreachableHint: 'start one with `rbee hive start`, or pass --hive',
    ...(timeoutMs === undefined ? {} : {timeoutMs}),
  });
}
