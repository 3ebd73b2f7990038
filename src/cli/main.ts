/** The rbee CLI: parses, runs one command, and maps failures to a one-line error and an exit code. */
import {Command, CommanderError} from 'commander';
import {environmentHelp, envFlag} from '../config/env.js';
import {RbeeError} from '../errors.js';
import {exitCodes, reportFailure} from './output.js';
import {rbeeVersion} from '../version.js';

const program = new Command('rbee')
  .description('self-hosted inference: one control plane for the GPUs and CPUs you own')
  .version(rbeeVersion)
  .option('--hive <url>', 'hive to talk to (env RBEE_HIVE_URL)')
  .option('--token <token>', 'API token (env RBEE_TOKEN)')
  .option('--json', 'print one JSON document on stdout')
  .showHelpAfterError()
  .addHelpText('after', `\nEnvironment:\n${environmentHelp()}\n\nExit codes: 0 ok, 1 failure, 2 usage, 3 hive unreachable, 4 not found, 5 timeout`)
  .exitOverride();

// A spare worker process (src/worker/spare-process.ts) waits for the spawn it becomes, then goes on
// exactly as `rbee worker run` with that spawn's arguments.
if (process.argv[2] === 'worker' && process.argv[3] === 'spare') {
  const {becomeWorker} = await import('../worker/spare-process.js');
  try {
    process.argv = [process.argv[0]!, process.argv[1]!, ...(await becomeWorker(process.argv.slice(4)))];
  } catch (error) {
    process.exit(reportFailure(error, {json: false}));
  }
}

// `rbee worker run` is how the hive starts every worker, and a worker's start-up is part of its
// spawn-to-ready time: it builds that one command, not the whole CLI (a few hundred ms of imports).
if (process.argv[2] === 'worker' && process.argv[3] === 'run') {
  const {workerRunCommand} = await import('./commands/worker-run-command.js');
  program.addCommand(new Command('worker').description('run one worker process (the hive starts it)').addCommand(workerRunCommand()));
} else {
  const {allCommands} = await import('./commands/all-commands.js');
  for (const command of allCommands(() => program)) {
    program.addCommand(command);
  }
}

// addCommand does not pass these settings down; every level must throw instead of exiting.
function inheritSettings(command: Command): void {
  for (const sub of command.commands) {
    sub.exitOverride().showHelpAfterError();
    inheritSettings(sub);
  }
}
inheritSettings(program);

const json = process.argv.includes('--json') || envFlag('RBEE_JSON');
// `rbee --help | head` closes the pipe early: that is the reader's choice, not a failure to report.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') {
      process.exit(process.exitCode ?? exitCodes.ok);
    }
    throw error;
  });
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError && error.code !== 'commander.invalidArgument') {
    // Commander has said what was wrong on stderr; a script asked for JSON gets it as one document too.
    if (json && error.exitCode !== 0) {
      const message = error.code === 'commander.help' ? 'no command given (see rbee --help)' : error.message.replace(/^error: /, '');
      process.stdout.write(`${JSON.stringify({error: {code: 'invalid_request', message}})}\n`);
    }
    process.exitCode = error.exitCode === 0 ? exitCodes.ok : exitCodes.usage;
  } else if (error instanceof CommanderError) {
    // A flag parser run by a command itself (a variable's value, say): commander has printed nothing.
    process.exitCode = reportFailure(new RbeeError('invalid_request', error.message, {cause: error}), {json});
  } else {
    process.exitCode = reportFailure(error, {json});
  }
}
