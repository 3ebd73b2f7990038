/**
 * A spare worker process, `rbee worker spare --worker-id ID --type TYPE --hive-logs DIR`, started
 * by a hive before any spawn needs it (src/hive/spare-workers.ts). It pays Node's boot and the
 * imports a worker of its type runs (the worker, its HTTP server, its adapter's module) while
 * nobody waits, then waits on stdin for the one line that makes it a worker: the `worker run`
 * arguments and environment of a spawn. From there it runs the same code as a worker the hive
 * starts fresh, with the same process group (it was started as its own group's leader).
 *
 * Its stdin is its hive's pipe: the pipe's end before the line means the hive is gone (killed or
 * stopped), and the spare exits, so none outlives its hive. Once it is a worker, the pipe means
 * nothing: a worker outlives a hive restart and is re-adopted by the worker id in its command
 * line, which is why the hive picks the id before starting the spare and puts it there.
 */
import fs from 'node:fs';
import {parseArgs} from 'node:util';
import {z} from 'zod';
import type {AdapterContext, RbeeAdapter} from '../adapters/adapter-api.js';
import {RbeeError} from '../errors.js';
import {parseWire} from '../protocol/parse.js';
import {SpareAssignmentSchema, type SpareAssignment} from '../protocol/wire.js';
import {traceStartup} from '../startup-trace.js';

const SpareFlagsSchema = z.strictObject({
  'worker-id': z.string().regex(/^worker-[A-Za-z0-9-]+$/, 'expected worker-<id>'),
  type: z.string().min(1),
  /** Names the hive the spare belongs to, so a restarted hive can find strays of its own. */
  'hive-logs': z.string().min(1),
  /** A pipe the hive reads: the spare writes one line on it once its imports are done. */
  'booted-fd': z.coerce.number().int().min(3).max(1_000).optional(),
  /** The hive's config file, which its workers read for their adapter: read once ahead, for the warm-up. */
  config: z.string().min(1).optional(),
});
type SpareFlags = z.output<typeof SpareFlagsSchema>;

/** The largest assignment line read: arguments and environment of one worker are a few KB. */
const maxAssignmentBytes = 1024 * 1024;

const log = (message: string) => process.stderr.write(`[spare] ${message}\n`);

function parseFlags(argv: string[]): SpareFlags {
  let values: Record<string, unknown>;
  try {
    values = parseArgs({
      args: argv,
      options: {'worker-id': {type: 'string'}, type: {type: 'string'}, 'hive-logs': {type: 'string'}, 'booted-fd': {type: 'string'}, config: {type: 'string'}},
      strict: true,
    }).values;
  } catch (error) {
    throw new RbeeError('invalid_request', `rbee worker spare: ${(error as Error).message}`, {cause: error});
  }
  const parsed = parseWire(SpareFlagsSchema, values, 'rbee worker spare');
  if (!parsed.ok) {
    throw new RbeeError('invalid_request', parsed.message);
  }
  return parsed.value;
}

/**
 * Builds one worker server and closes it unheard: fastify's first instance in a process pays
 * ~200 ms of lazy set-up (its plugins' first load, route compilation) that later ones do not, and
 * a worker builds its server while its engine loads on the same cores. The runtime it would serve
 * is never asked anything: the server never listens.
 */
async function warmUpWorkerServer(): Promise<void> {
  const [{createWorkerServer}, {WorkerRuntime}] = await Promise.all([import('./worker-server.js'), import('./worker-runtime.js')]);
  const runtime = new WorkerRuntime(
    {workerId: 'warm-up', modelName: 'warm-up', device: 'cpu', parallel: 1, maxQueue: 0},
    {} as RbeeAdapter,
    {} as AdapterContext,
  );
  const app = createWorkerServer(runtime, {key: 'warm-up'});
  await app.ready();
  await app.close();
}

/**
 * The config read and a built-in adapter of `type` made once (and dropped): their modules' and
 * schemas' first use costs tens of ms that the worker's own load then skips. A plugin type's
 * factory is user code and is not run ahead; the config is still read.
 */
async function warmUpAdapter(type: string, configPath: string | undefined): Promise<void> {
  const [{loadConfigAt}, {loadBuiltInAdapter}] = await Promise.all([import('../adapters/configured-adapters.js'), import('../adapters/load-adapters.js')]);
  const loaded = await loadConfigAt(configPath);
  await loadBuiltInAdapter(type, {builtInOptions: loaded.config.types});
}

/** What a worker of `type` does before its engine starts, done now; a failure here is left for the worker's own load to report. */
async function preload(flags: SpareFlags): Promise<void> {
  await Promise.all([
    import('../cli/commands/worker-run-command.js'),
    import('./run-worker.js'),
    warmUpWorkerServer(),
    warmUpAdapter(flags.type, flags.config),
    // Every engine starts through it: finding it out runs a process, once.
    import('../adapters/engine-process.js').then(({parentDeathWrapper}) => parentDeathWrapper()),
  ]).catch((error: unknown) => log(`preloading failed (the worker will say why when it loads): ${(error as Error).message}`));
}

/** The first line on stdin, or null when stdin ends without one (the hive is gone). */
function readAssignmentLine(): Promise<string | null> {
  return new Promise((resolve, reject) => {
    let text = '';
    const done = (line: string | null) => {
      process.stdin.off('data', onData);
      process.stdin.off('end', onEnd);
      process.stdin.off('error', onEnd);
      resolve(line);
    };
    const onData = (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const newline = text.indexOf('\n');
      if (newline >= 0) {
        done(text.slice(0, newline));
      } else if (text.length > maxAssignmentBytes) {
        reject(new RbeeError('invalid_request', `spare assignment: longer than ${maxAssignmentBytes} bytes`));
      }
    };
    const onEnd = () => done(null);
    process.stdin.on('data', onData);
    process.stdin.once('end', onEnd);
    process.stdin.once('error', onEnd);
  });
}

function parseAssignment(line: string, flags: SpareFlags): SpareAssignment {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    throw new RbeeError('invalid_request', `spare assignment: not JSON: ${(error as Error).message}`, {cause: error});
  }
  const parsed = parseWire(SpareAssignmentSchema, value, 'spare assignment');
  if (!parsed.ok) {
    throw new RbeeError('invalid_request', parsed.message);
  }
  const {args} = parsed.value;
  const flag = (name: string) => {
    const at = args.indexOf(name);
    return at < 0 ? undefined : args[at + 1];
  };
  // Re-adoption finds a worker by the id in its command line: the spare's, fixed when it started.
  if (args[0] !== 'worker' || args[1] !== 'run' || flag('--worker-id') !== flags['worker-id'] || flag('--type') !== flags.type) {
    throw new RbeeError(
      'invalid_request',
      `spare assignment: expected \`worker run --worker-id ${flags['worker-id']} --type ${flags.type} …\`, got \`${args.slice(0, 2).join(' ')}\` for ${flag('--worker-id') ?? 'no id'} (${flag('--type') ?? 'no type'})`,
    );
  }
  return parsed.value;
}

function signalBooted(fd: number | undefined): void {
  if (fd === undefined) {
    return;
  }
  try {
    fs.writeSync(fd, 'booted\n');
    fs.closeSync(fd);
  } catch {
    // The hive is gone (EPIPE): stdin's end says so next.
  }
}

/** The environment the worker would have been started with, in place of the spare's own. */
function takeEnvironment(env: Record<string, string>): void {
  for (const key of Object.keys(process.env)) {
    if (!Object.hasOwn(env, key)) {
      delete process.env[key];
    }
  }
  Object.assign(process.env, env);
}

/**
 * Runs the spare until it is assigned: returns the `worker run` arguments to go on with, having
 * taken the worker's environment; exits (0) when its hive goes first.
 */
export async function becomeWorker(argv: string[]): Promise<string[]> {
  const flags = parseFlags(argv);
  const id = flags['worker-id'];
  // Read from the start, so a hive that dies while the spare imports is seen at once after.
  const line = readAssignmentLine();
  await preload(flags);
  traceStartup(id, 'spare: imports done');
  signalBooted(flags['booted-fd']);
  const assigned = await line;
  if (assigned === null) {
    log(`${id}: its hive is gone before it was needed; exiting`);
    process.exit(0);
  }
  const assignment = parseAssignment(assigned, flags);
  traceStartup(id, 'spare: assigned');
  // A worker outlives its hive's pipe (re-adoption): from here stdin is closed and means nothing.
  process.stdin.destroy();
  takeEnvironment(assignment.env);
  return assignment.args;
}
