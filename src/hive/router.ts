import {RbeeError} from '../errors.js';
import type {Supervisor} from './supervisor.js';
import {isAlive, isServing, type WorkerView} from './worker-record.js';

/** The models the hive can answer for now: one entry per served model name. */
export function servedModels(supervisor: Supervisor): string[] {
  const names = new Set<string>();
  for (const record of supervisor.workers.values()) {
    if (isServing(record)) {
      names.add(record.modelName);
      for (const name of record.lastHeartbeat?.available_models ?? []) {
        names.add(name);
      }
    }
  }
  return [...names].sort();
}

/**
 * Spreads requests over the workers serving a model: the least busy (fewest requests in flight
 * through the hive) wins, and ties go round-robin, so sequential requests do not all land on the
 * first worker. `avoid` names workers to pass over while another one serves the model (one that
 * just failed to answer, say).
 */
export class Router {
  readonly #supervisor: Supervisor;
  #turn = 0;

  constructor(supervisor: Supervisor) {
    this.#supervisor = supervisor;
  }

  pick(model: string | undefined, avoid: ReadonlySet<string> = new Set()): WorkerView {
    const matching = servingWorkers(this.#supervisor, model);
    const preferred = matching.filter(record => !avoid.has(record.id));
    return this.#leastBusy(preferred.length > 0 ? preferred : matching);
  }

  /** Another worker for the same model than those in `tried`, or null when there is none. */
  pickOther(model: string | undefined, tried: ReadonlySet<string>, avoid: ReadonlySet<string> = new Set()): WorkerView | null {
    let others: WorkerView[];
    try {
      others = servingWorkers(this.#supervisor, model).filter(record => !tried.has(record.id));
    } catch {
      return null;
    }
    if (others.length === 0) {
      return null;
    }
    const preferred = others.filter(record => !avoid.has(record.id));
    return this.#leastBusy(preferred.length > 0 ? preferred : others);
  }

  #leastBusy(records: WorkerView[]): WorkerView {
    const fewest = Math.min(...records.map(record => record.inFlight));
    const tied = records.filter(record => record.inFlight === fewest);
    const chosen = tied[this.#turn % tied.length]!;
    this.#turn = (this.#turn + 1) % 1_000_000;
    return chosen;
  }
}

/**
 * The ready workers for a model, by any of its names; throws the reason when there are none. With
 * no model named and exactly one model served, that one: the common single-model hive needs no model field.
 */
function servingWorkers(supervisor: Supervisor, model: string | undefined): WorkerView[] {
  const records = [...supervisor.workers.values()];
  const serving = records.filter(isServing);
  if (model === undefined) {
    const models = servedModels(supervisor);
    const loading = records.some(record => record.state === 'starting' || record.group?.group.health === 'starting');
    if (models.length === 0 && loading) {
      throw new RbeeError('worker_not_ready', 'no model is being served yet: a worker (or worker group) is still starting; try again shortly');
    }
    if (models.length !== 1) {
      throw new RbeeError(
        'invalid_request',
        models.length === 0
          ? 'no model is being served: spawn a worker first (rbee worker spawn --model default)'
          : `several models are served (${models.join(', ')}): name one in the \`model\` field`,
      );
    }
    model = models[0];
  }
  const matching = serving.filter(record => model !== undefined && record.aliases.has(model));
  if (matching.length === 0) {
    const alive = records.filter(record => isAlive(record.state) && model !== undefined && record.aliases.has(model));
    if (alive.some(record => record.state === 'starting')) {
      throw new RbeeError('worker_not_ready', `model "${model}" is still loading; try again shortly`);
    }
    // A group's coordinator counts even while its process is gone: a group waiting to restart is "starting".
    const group = records.find(
      record =>
        model !== undefined &&
        record.aliases.has(model) &&
        record.group?.membership.role === 'coordinator' &&
        (isAlive(record.state) || record.group.group.health === 'starting'),
    )?.group?.group;
    if (group !== undefined && group.health !== 'healthy') {
      throw new RbeeError(
        group.health === 'starting' ? 'worker_not_ready' : 'model_unavailable',
        `model "${model}" is served by worker group ${group.id}, which is ${group.health}${group.reason === null ? '' : `: ${group.reason}`}`,
      );
    }
    if (alive.some(record => record.draining)) {
      throw new RbeeError('model_unavailable', `every worker for model "${model}" is draining`);
    }
    const served = servedModels(supervisor);
    throw new RbeeError('model_not_found', `no worker serves model "${model}"; served: ${served.length === 0 ? 'none' : served.join(', ')}`);
  }
  return matching;
}
