#!/usr/bin/env node
// The start-up timeline's first marks (RBEE_STARTUP_TRACE), taken before any of rbee is imported:
// what Node's own boot and rbee's imports cost is the gap between these and the next mark.
if (/^(1|true|yes)$/i.test(process.env.RBEE_STARTUP_TRACE ?? '')) {
  const idAt = process.argv.indexOf('--worker-id');
  const subject = idAt > 0 ? process.argv[idAt + 1] : 'rbee';
  const now = (performance.timeOrigin + performance.now()).toFixed(1);
  process.stderr.write(`[trace] ${performance.timeOrigin.toFixed(1)} ${subject} process started\n[trace] ${now} ${subject} main entered\n`);
}
await import('../dist/cli/main.js');
