/**
 * `rbee dashboard`: the live heartbeat view. ink and React are imported inside the action, so
 * `rbee --help` and every other command never load them.
 */
import {Command} from 'commander';
import {rbeeHome} from '../../config/env.js';
import {RbeeError} from '../../errors.js';
import {hiveClient} from '../context.js';

export function dashboardCommand(): Command {
  return new Command('dashboard')
    .description('interactive live view of the hive: workers, heartbeats, devices (needs a terminal; scripts: status --watch --json)')
    .action(async (_options: unknown, command: Command) => {
      const missing = [process.stdout.isTTY ? null : 'stdout', process.stdin.isTTY ? null : 'stdin'].filter(name => name !== null);
      if (missing.length > 0) {
        throw new RbeeError(
          'invalid_request',
          `dashboard needs a terminal (${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not a TTY); for scripts follow the live events with \`rbee status --watch --json\``,
        );
      }
      // ink draws only the final frame when it believes it runs in CI; this is a terminal, checked above.
      delete process.env.CI;
      delete process.env.CONTINUOUS_INTEGRATION;
      // React's production build: its development build costs several times the CPU per frame.
      process.env.NODE_ENV ??= 'production';
      const {runDashboard} = await import('../../tui/run-dashboard.js');
      await runDashboard({client: hiveClient(command, 120_000), home: rbeeHome()});
    });
}
