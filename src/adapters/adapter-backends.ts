/**
 * What an adapter says it runs on, as the hive reads it: the declaration itself, or the answer of
 * its `backends()` probe, checked like any plugin result. A probe that throws, hangs or answers
 * nonsense makes the type unavailable everywhere with that reason, rather than runnable anywhere.
 */
import {parseWire} from '../protocol/parse.js';
import {AdapterBackendsSchema, deviceBackends, type AdapterBackends, type RbeeAdapter} from './adapter-api.js';

/** A worker type and the backends its adapter runs on. */
export type WorkerTypeSupport = {type: string; backends: AdapterBackends};

const anywhere: AdapterBackends = Object.fromEntries(deviceBackends.map(backend => [backend, {}]));

function unavailableEverywhere(reason: string): AdapterBackends {
  return Object.fromEntries(deviceBackends.map(backend => [backend, {unavailable: reason}]));
}

export async function adapterBackends(adapter: RbeeAdapter, options: {timeoutMs?: number} = {}): Promise<AdapterBackends> {
  const declared = adapter.backends;
  if (declared === undefined) {
    return anywhere;
  }
  if (typeof declared !== 'function') {
    return declared;
  }
  const timeoutMs = options.timeoutMs ?? 10_000;
  let timer: NodeJS.Timeout | undefined;
  let answer: unknown;
  try {
    answer = await Promise.race([
      Promise.resolve().then(() => declared()),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs / 1000} s`)), timeoutMs);
      }),
    ]);
  } catch (error) {
    return unavailableEverywhere(`adapter ${adapter.name} could not tell where its engine runs: ${(error as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
  const parsed = parseWire(AdapterBackendsSchema, answer, `backends() of adapter ${adapter.name}`);
  return parsed.ok ? parsed.value : unavailableEverywhere(parsed.message);
}
