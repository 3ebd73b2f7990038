import path from 'node:path';
import {Command, Option} from 'commander';
import {RbeeError} from '../../errors.js';
import {baseModelNotice} from '../../models/base-model.js';
import {createProgressBar} from '../../models/progress-bar.js';
import type {RestartPolicy, SpawnPlan, SpawnWorkerRequestInput, WorkerInfo} from '../../protocol/wire.js';
import {globalOptions, hiveClient} from '../context.js';
import {formatAge, formatBytes, table} from '../format.js';
import type {HiveClient} from '../../protocol/hive-client.js';
import {emit} from '../output.js';
import {integerFlagIn, keyValueFlag} from '../parse-flags.js';
import {limits} from '../../config/limits.js';
import {workerRunCommand} from './worker-run-command.js';
import {describeGroup, groupsCommand, spawnGroupCommand} from './group-commands.js';
import {lifetimeFields, lifetimeOptions, modelOption, modelReference, shapeFields, shapeOptions, timeoutOption} from './spawn-options.js';

type SpawnOptions = {
  model: string;
  device: string;
  type?: string;
  contextSize?: number;
  threads?: number;
  parallel?: number;
  maxQueue?: number;
  readyTimeout?: number;
  idleTimeout?: number;
  name?: string;
  restart: string;
  force?: boolean;
  dryRun?: boolean;
  wait?: boolean;
  timeout: number;
  adapterOption?: Record<string, string | number | boolean | null>;
  engine?: string;
};

function describePlan(plan: SpawnPlan): string {
  const estimate =
    plan.estimate === null
      ? 'memory: estimated once the model is downloaded'
      : `memory: ~${formatBytes(plan.estimate.total)} (weights ${formatBytes(plan.estimate.weights)} + context ${formatBytes(plan.estimate.context)}), ${formatBytes(plan.free_memory)} free`;
  return [`would spawn a ${plan.type} worker for ${plan.model} on ${plan.device}`, estimate, plan.fits ? 'fits' : `does not fit: ${plan.reason ?? ''}`].join(
    '\n',
  );
}

function describe(worker: WorkerInfo): string {
  const reason = worker.reason === null ? '' : ` (${worker.reason})`;
  return `${worker.worker_id}  ${worker.state}${reason}  ${worker.model} on ${worker.device}  ${worker.url}`;
}

/**
 * Polls until the worker serves or fails; a download or load in progress shows as a bar on a terminal.
 * A failure the hive restarts the worker after is said at once (stderr), and is what a timeout reports.
 */
async function waitUntilReady(client: HiveClient, worker: WorkerInfo, timeoutSeconds: number): Promise<WorkerInfo> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  const bar = createProgressBar({label: worker.model});
  let current = worker;
  let toldFailure: string | null = null;
  try {
    // A failed worker whose process is still going down (pid set) is not settled: its restart
    // policy decides once the process is gone, and under load that takes a moment.
    while (current.state === 'starting' || (current.state === 'failed' && current.pid !== null)) {
      if (current.last_failure !== null && current.last_failure !== toldFailure) {
        toldFailure = current.last_failure;
        bar.done();
        process.stderr.write(
          `rbee: worker ${current.worker_id} failed: ${current.last_failure}\n` +
            `rbee: the hive restarts it (restart policy ${current.restart}, ${current.restarts} restart(s) so far); waiting up to ${timeoutSeconds} s in all\n`,
        );
      }
      if (Date.now() > deadline) {
        const last = current.last_failure === null ? '' : `; its last failure: ${current.last_failure}`;
        throw new RbeeError('timeout', `worker ${current.worker_id} was not ready after ${timeoutSeconds} s (state ${current.state})${last}`);
      }
      await new Promise(resolve => setTimeout(resolve, 250));
      current = await client.getWorker(current.worker_id);
      const progress = current.progress;
      if (progress !== null && (progress.phase === 'downloading' || progress.phase === 'assembling' || progress.phase === 'verifying')) {
        bar.update({phase: progress.phase, done: progress.done, total: progress.total});
      } else if (progress !== null && progress.phase === 'loading') {
        bar.update({phase: 'loading', done: progress.done, total: progress.total, unit: 'steps'});
      }
    }
  } finally {
    bar.done();
  }
  if (current.state !== 'ready' && current.state !== 'busy') {
    throw new RbeeError('worker_failed', `worker ${current.worker_id} ${current.state}: ${current.reason ?? 'no reason given'}`);
  }
  return current;
}

export function workerCommand(): Command {
  const worker = new Command('worker').description('spawn, list and stop workers (one process, one model, one device)');

  const spawn = worker
    .command('spawn')
    .description('ask the hive for a worker')
    .addOption(modelOption())
    .addOption(new Option('--device <device>', 'cpu, cuda:N or metal').env('RBEE_DEVICE').default('cpu'))
    .addOption(new Option('--type <type>', 'worker type (default: the fastest for the device, by what the adapters declare)').env('RBEE_WORKER_TYPE'))
    .option(
      '--adapter-option <key=value>',
      "an option for the worker type's adapter, over the config's (repeatable; checked by the adapter)",
      keyValueFlag('--adapter-option'),
    )
    .option(
      '--engine <path>',
      "the engine program (or install folder) the worker type's adapter runs: a llama-server build, an ollama binary, a ComfyUI folder, … (needs --type)",
    )
    .option('--max-queue <n>', 'requests that may wait beyond --parallel before a 503', integerFlagIn('--max-queue', limits.maxQueue))
    .option(
      '--ready-timeout <ms>',
      "fail the worker when its engine is not ready after this long (default: the adapter's, else 10 min)",
      integerFlagIn('--ready-timeout', limits.readyTimeoutMs),
    )
    .addOption(new Option('--restart <policy>', 'restart after a failure').choices(['never', 'on-failure', 'always']).default('on-failure'))
    .option('--force', 'spawn even if the memory estimate says it will not fit')
    .option('--dry-run', 'print where the worker would go and how much memory it would take; start nothing')
    .option('--wait', 'return only once the worker is ready (or failed)')
    .addOption(timeoutOption())
    .action(async (options: SpawnOptions, command: Command) => {
      const client = hiveClient(command);
      const request: Omit<SpawnWorkerRequestInput, 'dry_run'> = {
        model: modelReference(options.model),
        device: options.device,
        // An empty RBEE_WORKER_TYPE (set, but to nothing) leaves the choice to the hive.
        ...(options.type === undefined || options.type === '' ? {} : {type: options.type}),
        ...shapeFields(options),
        ...(options.maxQueue === undefined ? {} : {max_queue: options.maxQueue}),
        ...(options.readyTimeout === undefined ? {} : {ready_timeout_ms: options.readyTimeout}),
        ...lifetimeFields(options),
        ...(options.adapterOption === undefined ? {} : {adapter_options: options.adapterOption}),
        // The hive runs elsewhere (another working directory): the path goes absolute from here.
        ...(options.engine === undefined ? {} : {engine: path.resolve(options.engine)}),
        restart: options.restart as RestartPolicy,
        force: options.force === true,
      };
      if (options.dryRun === true) {
        const plan = await client.planWorker(request);
        emit(globalOptions(command), plan, () => describePlan(plan));
        if (!plan.fits) {
          process.exitCode = 1;
        }
        return;
      }
      let info = await client.spawnWorker(request);
      if (options.model === 'default' && globalOptions(command).json !== true) {
        process.stderr.write(`note: ${baseModelNotice}\n`);
      }
      if (options.wait === true) {
        info = await waitUntilReady(client, info, options.timeout);
      }
      emit(globalOptions(command), info, () => describe(info));
    });
  [...shapeOptions('CPU threads'), ...lifetimeOptions('worker')].forEach(option => spawn.addOption(option));

  worker
    .command('list')
    .description('list workers: the requests and tokens the hive routed to each, and their last heartbeat')
    .option('--all', 'include stopped and failed workers')
    .action(async (options: {all?: boolean}, command: Command) => {
      const list = await hiveClient(command).listWorkers({all: options.all === true});
      emit(globalOptions(command), list, () =>
        list.workers.length === 0
          ? 'no workers (spawn one: rbee worker spawn --model default --wait)'
          : table(
              ['ID', 'TYPE', 'MODEL', 'DEVICE', 'STATE', 'PID', 'REQS', 'TOKENS', 'MEM', 'HEARTBEAT'],
              list.workers.map(item => [
                item.worker_id,
                item.type,
                item.model,
                item.device,
                item.state,
                String(item.pid ?? '-'),
                // The hive's own counts: current the moment a request ends, where the heartbeat's lag.
                String(item.requests_routed),
                String(item.tokens_relayed),
                formatBytes(item.device === 'cpu' ? (item.last_heartbeat?.ram_used ?? 0) : (item.last_heartbeat?.vram_used ?? 0)),
                formatAge(item.last_heartbeat_at),
              ]),
            ),
      );
    });

  worker
    .command('stop')
    .description('stop a worker (SIGTERM, grace period, then SIGKILL of its process group), or a worker group by its id (a group member stops its whole group)')
    .argument('<id>', 'worker id, or group id')
    .action(async (id: string, _options: unknown, command: Command) => {
      const client = hiveClient(command, 120_000);
      if (/^group-[0-9a-f]{8}$/.test(id)) {
        const group = await client.stopGroup(id);
        emit(globalOptions(command), group, () => describeGroup(group));
        return;
      }
      const info = await client.stopWorker(id);
      emit(
        globalOptions(command),
        info,
        () => `${describe(info)}${info.group_id === null ? '' : `\n(a member of group ${info.group_id}: the whole group was stopped)`}`,
      );
    });

  worker
    .command('wait')
    .description('wait until a worker reaches a state (for scripts and CI)')
    .argument('<id>', 'worker id')
    .addOption(new Option('--state <state>', 'state to wait for').choices(['ready', 'stopped', 'failed']).default('ready'))
    .addOption(
      new Option('--timeout <seconds>', 'give up after this long (exit code 5)')
        .env('RBEE_TIMEOUT')
        .argParser(integerFlagIn('--timeout', limits.waitSeconds))
        .default(120),
    )
    .action(async (id: string, options: {state: 'ready' | 'stopped' | 'failed'; timeout: number}, command: Command) => {
      const client = hiveClient(command);
      const deadline = Date.now() + options.timeout * 1000;
      // Terminal states: once there, a worker will not reach the wanted one by waiting.
      const terminal = new Set(['stopped', 'failed']);
      let info = await client.getWorker(id);
      const reached = (state: string) => state === options.state || (options.state === 'ready' && state === 'busy');
      while (!reached(info.state)) {
        if (terminal.has(info.state)) {
          throw new RbeeError('worker_failed', `worker ${id} is ${info.state} (${info.reason ?? 'no reason given'}); it will not become ${options.state}`);
        }
        if (Date.now() > deadline) {
          throw new RbeeError('timeout', `worker ${id} is still ${info.state} after ${options.timeout} s`);
        }
        await new Promise(resolve => setTimeout(resolve, 200));
        info = await client.getWorker(id);
      }
      emit(globalOptions(command), info, () => describe(info));
    });

  worker
    .command('drain')
    .description('let a worker finish what it has and take nothing new (delivered with its next heartbeat)')
    .argument('<id>', 'worker id')
    .action(async (id: string, _options: unknown, command: Command) => {
      const info = await hiveClient(command).commandWorker(id, {type: 'drain', reason: 'rbee worker drain'});
      emit(globalOptions(command), info, () => `${info.worker_id} will drain at its next heartbeat`);
    });

  worker
    .command('unload')
    .description("unload a worker's model (a single-model worker then exits, a multi-model one frees it and goes on); delivered with its next heartbeat")
    .argument('<id>', 'worker id')
    .option('--model <model>', "model to unload (default: the worker's model)")
    .action(async (id: string, options: {model?: string}, command: Command) => {
      const client = hiveClient(command);
      const current = await client.getWorker(id);
      const info = await client.commandWorker(id, {type: 'unload_model', model: options.model ?? current.model});
      emit(globalOptions(command), info, () => `${info.worker_id} will unload ${options.model ?? current.model} at its next heartbeat`);
    });

  worker.addCommand(spawnGroupCommand());
  worker.addCommand(groupsCommand());
  worker.addCommand(workerRunCommand(), {hidden: true});
  return worker;
}
