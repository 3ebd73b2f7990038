/**
 * Every route of the hive's HTTP API by name: its method and path template. The hive client builds
 * its requests only from here, so a route's path is written once on the client side.
 */

export type HttpMethod = 'GET' | 'POST' | 'DELETE';

export type HiveRoute = {readonly method: HttpMethod; readonly path: string};

export const hiveRoutes = {
  health: {method: 'GET', path: '/health'},
  metrics: {method: 'GET', path: '/metrics'},
  status: {method: 'GET', path: '/v1/status'},
  shutdown: {method: 'POST', path: '/v1/shutdown'},
  adapters: {method: 'GET', path: '/v1/adapters'},
  events: {method: 'GET', path: '/v1/events'},
  listWorkers: {method: 'GET', path: '/v1/workers'},
  spawnWorker: {method: 'POST', path: '/v1/workers'},
  getWorker: {method: 'GET', path: '/v1/workers/:id'},
  workerKey: {method: 'GET', path: '/v1/workers/:id/key'},
  stopWorker: {method: 'DELETE', path: '/v1/workers/:id'},
  commandWorker: {method: 'POST', path: '/v1/workers/:id/commands'},
  listGroups: {method: 'GET', path: '/v1/groups'},
  spawnGroup: {method: 'POST', path: '/v1/groups'},
  getGroup: {method: 'GET', path: '/v1/groups/:id'},
  stopGroup: {method: 'DELETE', path: '/v1/groups/:id'},
  models: {method: 'GET', path: '/v1/models'},
  catalogue: {method: 'GET', path: '/v1/catalogue'},
  infer: {method: 'POST', path: '/v1/infer'},
  chatCompletions: {method: 'POST', path: '/v1/chat/completions'},
  completions: {method: 'POST', path: '/v1/completions'},
  runWorkflow: {method: 'POST', path: '/v1/workflows'},
  cancelWorkflow: {method: 'DELETE', path: '/v1/workflows/:id'},
  /** Followed by the output's path (`output/<subfolder…>/<filename>`), as the workflow's events name it. */
  workflowOutputs: {method: 'GET', path: '/v1/workflows/:id/outputs'},
  /** Worker -> hive; listed so a worker-side client names it the same way. */
  heartbeat: {method: 'POST', path: '/v1/heartbeat'},
} as const satisfies Record<string, HiveRoute>;

export type HiveRouteName = keyof typeof hiveRoutes;

/** The `:name` parameters of a path template, as an object type (`{id: string}` for `/v1/workers/:id`). */
type PathParams<Path extends string> = Path extends `${string}:${infer Name}/${infer Rest}`
  ? {[K in Name]: string} & PathParams<`/${Rest}`>
  : Path extends `${string}:${infer Name}`
    ? {[K in Name]: string}
    : Record<never, never>;

export type RouteParams<Name extends HiveRouteName> = PathParams<(typeof hiveRoutes)[Name]['path']>;

/**
 * A route's path with its parameters filled in, each URI-encoded (a worker id is never a path of
 * its own), and an optional query.
 */
export function routePath<Name extends HiveRouteName>(name: Name, params: RouteParams<Name>, query: Record<string, string> = {}): string {
  const values = params as Record<string, string>;
  const path = hiveRoutes[name].path.replace(/:([a-z_]+)/g, (_match, key: string) => {
    const value = values[key];
    if (value === undefined) {
      throw new TypeError(`route ${name} needs its \`${key}\` parameter`);
    }
    return encodeURIComponent(value);
  });
  const search = new URLSearchParams(query).toString();
  return search === '' ? path : `${path}?${search}`;
}
