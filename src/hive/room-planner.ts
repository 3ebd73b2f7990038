/**
 * Making room for a model about to start (models on demand), decided from figures alone so it is
 * tested without processes: which loaded models to stop, least recently used first, so that the
 * device keeps its headroom free and the hive stays within its model count. Only idle, unpinned
 * models that have served the request they were started for are ever chosen: a model is never cut
 * off mid-request, and one started for a request is not stopped before it answers (no swap storms).
 */

export type LoadedModel = {
  workerId: string;
  name: string;
  device: string;
  /** Memory it holds on its device (its last heartbeat's VRAM, or RAM on the CPU). */
  bytes: number;
  inFlight: number;
  lastActiveAt: number;
  /** Pinned, or spawned by hand: never stopped to make room. */
  pinned: boolean;
  /** Started for a request that has not been routed to it yet. */
  awaitingFirstRequest: boolean;
};

export type RoomRequest = {
  device: string;
  /** The new model's memory estimate on `device`. */
  need: number;
  /** Free memory on `device` now. */
  free: number;
  /** Memory to keep free on `device` beyond the estimate. */
  headroom: number;
  /** Every model loaded now, on every device. */
  loaded: readonly LoadedModel[];
  maxLoadedModels: number | null;
};

export type RoomPlan =
  | {kind: 'fits'}
  /** Stop these, then start. */
  | {kind: 'evict'; evict: LoadedModel[]}
  /** Room would come from models busy now: wait for them to go idle, then plan again. */
  | {kind: 'wait'; busy: LoadedModel[]}
  | {kind: 'refuse'; reason: string};

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(2)} GiB`;

function evictable(model: LoadedModel): boolean {
  return !model.pinned && !model.awaitingFirstRequest && model.inFlight === 0;
}

/** The models to stop, least recently used first, or null when `pool` cannot free enough. */
function choose(request: RoomRequest, pool: readonly LoadedModel[]): LoadedModel[] | null {
  const byAge = [...pool].sort((a, b) => a.lastActiveAt - b.lastActiveAt);
  const chosen: LoadedModel[] = [];
  let short = request.need + request.headroom - request.free;
  for (const model of byAge) {
    if (short <= 0) {
      break;
    }
    if (model.device === request.device && model.bytes > 0) {
      chosen.push(model);
      short -= model.bytes;
    }
  }
  if (short > 0) {
    return null;
  }
  let extra = request.maxLoadedModels === null ? 0 : request.loaded.length - chosen.length + 1 - request.maxLoadedModels;
  for (const model of byAge) {
    if (extra <= 0) {
      break;
    }
    if (!chosen.includes(model)) {
      chosen.push(model);
      extra--;
    }
  }
  return extra > 0 ? null : chosen;
}

export function planRoom(request: RoomRequest): RoomPlan {
  const idle = choose(request, request.loaded.filter(evictable));
  if (idle !== null) {
    return idle.length === 0 ? {kind: 'fits'} : {kind: 'evict', evict: idle};
  }
  const withBusy = choose(
    request,
    request.loaded.filter(model => !model.pinned),
  );
  if (withBusy !== null) {
    return {kind: 'wait', busy: withBusy.filter(model => !evictable(model))};
  }
  const loadedHere = request.loaded.filter(model => model.device === request.device);
  const listed =
    loadedHere.length === 0 ? 'nothing' : loadedHere.map(model => `${model.name} (${gib(model.bytes)}${model.pinned ? ', pinned' : ''})`).join(', ');
  const count =
    request.maxLoadedModels !== null && request.loaded.length >= request.maxLoadedModels
      ? `; ${request.loaded.length} of at most ${request.maxLoadedModels} models are loaded`
      : '';
  return {
    kind: 'refuse',
    reason:
      `${request.device} has ${gib(request.free)} free and needs ${gib(request.need)} plus ${gib(request.headroom)} headroom; ` +
      `loaded there: ${listed}${count}; nothing more can be stopped to make room`,
  };
}
