/**
 * Which worker type runs on which device, from what each adapter declares: the default for a
 * spawn that names no type is the fastest available one by the adapters' measured ranks (each
 * rank cites its bench/results file beside it, in the adapter), and a spawn of a type on a
 * backend it does not run on is refused before anything starts.
 */
import {deviceBackend, type BackendSupport} from '../adapters/adapter-api.js';
import type {WorkerTypeSupport} from '../adapters/adapter-backends.js';
import {RbeeError} from '../errors.js';

function describe(support: WorkerTypeSupport, backend: string): string {
  const on = support.backends[backend as keyof WorkerTypeSupport['backends']];
  return on === undefined ? `${support.type}: does not run on ${backend}` : `${support.type}: ${on.unavailable ?? 'available'}`;
}

/**
 * Ranked types first, lowest rank first; unranked ones after, in the order the adapters were
 * loaded (built-in first). Sorting is stable, so equal ranks keep that order too.
 */
function byDeclaredSpeed(a: BackendSupport, b: BackendSupport): number {
  return (a.speed?.rank ?? Number.POSITIVE_INFINITY) - (b.speed?.rank ?? Number.POSITIVE_INFINITY);
}

export function defaultWorkerType(device: string, offers: readonly WorkerTypeSupport[]): string {
  const backend = deviceBackend(device);
  const candidates = offers
    .flatMap(offer => {
      const on = offer.backends[backend];
      return on === undefined || on.unavailable !== undefined ? [] : [{type: offer.type, on}];
    })
    .sort((a, b) => byDeclaredSpeed(a.on, b.on));
  const chosen = candidates[0];
  if (chosen === undefined) {
    const why = offers.map(offer => describe(offer, backend)).join('; ');
    throw new RbeeError(
      'device_unsupported',
      `no worker type can run on ${device} here (${why || 'no adapters loaded'}): install an engine that can, or name a type with --type`,
      {field: 'device'},
    );
  }
  return chosen.type;
}

/** Refuses a type on a device whose backend its adapter does not declare, or declares unavailable here. */
export function checkRunsOn(type: string, device: string, offers: readonly WorkerTypeSupport[]): void {
  const offer = offers.find(candidate => candidate.type === type);
  if (offer === undefined) {
    return; // an unknown type is refused by name elsewhere
  }
  const backend = deviceBackend(device);
  const on = offer.backends[backend];
  const declared = Object.entries(offer.backends).filter(([, support]) => support !== undefined);
  const available = declared.filter(([, support]) => support?.unavailable === undefined).map(([name]) => name);
  if (on === undefined) {
    const runsOn = declared.map(([name, support]) => (support?.unavailable === undefined ? name : `${name} (not here: ${support.unavailable})`));
    throw new RbeeError(
      'device_unsupported',
      `worker type "${type}" does not run on ${device}: it runs on ${runsOn.join(', ') || 'no device'}; pick another --device or --type`,
      {field: 'device'},
    );
  }
  if (on.unavailable !== undefined) {
    throw new RbeeError(
      'device_unsupported',
      `worker type "${type}" cannot run on ${device} here: ${on.unavailable}${available.length === 0 ? '' : ` (here it runs on ${available.join(', ')})`}`,
      {field: 'device'},
    );
  }
}
