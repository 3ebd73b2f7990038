/**
 * `node --cpu-prof` for processes a benchmark does not start itself (a hive's workers): Node 20
 * refuses --cpu-prof in NODE_OPTIONS, but takes `--import` there, and the environment reaches every
 * node process the hive spawns. With RBEE_BENCH_CPU_PROF_DIR set, this starts V8's sampling profiler
 * at load and writes CPU.<date>.<time>.<pid>.0.<n>.cpuprofile (node's own naming) into that folder
 * when the process exits; the inspector session answers synchronously, so an `exit` handler can.
 */
import fs from 'node:fs';
import {Session} from 'node:inspector';
import path from 'node:path';

const dir = process.env.RBEE_BENCH_CPU_PROF_DIR;
if (dir !== undefined && dir !== '') {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  // µs between samples; node --cpu-prof's default is 1000.
  session.post('Profiler.setSamplingInterval', {interval: Number(process.env.RBEE_BENCH_CPU_PROF_INTERVAL_US ?? 500)});
  session.post('Profiler.start');
  process.once('exit', () => {
    session.post('Profiler.stop', (error, result) => {
      if (error !== null || result === undefined) {
        return;
      }
      const now = new Date();
      const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '.').slice(0, 15);
      fs.writeFileSync(path.join(dir, `CPU.${stamp}.${process.pid}.0.1.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
