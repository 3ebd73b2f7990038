/** `rbee dashboard` as a command: a terminal or a clear refusal, and ink loaded by it alone. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import {execa} from 'execa';
import {rbee, rbeeBin} from '../helpers/rbee-process.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const recorder = fileURLToPath(new URL('./fixtures/record-imports.mjs', import.meta.url));

/** Every module URL a run of the CLI resolved. */
async function importsOf(args: string[]): Promise<{urls: string[]; exitCode: number | undefined}> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-imports-')), 'imports.txt');
  fs.writeFileSync(file, '');
  const run = await execa(process.execPath, ['--import', recorder, ...args], {
    cwd: root,
    reject: false,
    timeout: 60_000,
    env: {RBEE_RECORD_IMPORTS: file, RBEE_HIVE_URL: 'http://127.0.0.1:9'},
  });
  const urls = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(line => line !== '');
  fs.rmSync(path.dirname(file), {recursive: true, force: true});
  return {urls, exitCode: run.exitCode};
}

const loadsUi = (url: string) => /\/node_modules\/(ink|react|react-reconciler|yoga-layout)\//.test(url) || /\/dist\/tui\//.test(url);

test('without a terminal it says so in one line, points to status --watch --json, and exits 2', async t => {
  const run = await rbee(['dashboard'], {env: {RBEE_HIVE_URL: 'http://127.0.0.1:9'}});
  t.is(run.exitCode, 2);
  t.is(String(run.stdout), '');
  const lines = String(run.stderr).trim().split('\n');
  t.is(lines.length, 1, String(run.stderr));
  t.regex(lines[0]!, /dashboard needs a terminal \(stdout and stdin are not a TTY\); .*`rbee status --watch --json`/);
  const json = await rbee(['--json', 'dashboard'], {env: {RBEE_HIVE_URL: 'http://127.0.0.1:9'}});
  t.is(json.exitCode, 2);
  t.is(JSON.parse(String(json.stdout)).error.code, 'invalid_request');
});

test('rbee --help, rbee status and a refused dashboard never load ink or React; the dashboard module does', async t => {
  const help = await importsOf([rbeeBin, '--help']);
  t.is(help.exitCode, 0);
  t.true(
    help.urls.some(url => url.includes('/node_modules/commander/')),
    "the recorder sees the CLI's imports",
  );
  t.true(
    help.urls.some(url => url.endsWith('/dist/cli/commands/dashboard-command.js')),
    'the command is registered',
  );
  t.deepEqual(help.urls.filter(loadsUi), []);
  const status = await importsOf([rbeeBin, 'status']);
  t.is(status.exitCode, 3, 'no hive at that URL');
  t.deepEqual(status.urls.filter(loadsUi), []);
  const refused = await importsOf([rbeeBin, 'dashboard']);
  t.is(refused.exitCode, 2);
  t.deepEqual(refused.urls.filter(loadsUi), []);
  const ui = await importsOf(['--input-type=module', '-e', 'await import("./dist/tui/run-dashboard.js")']);
  t.true(
    ui.urls.some(url => url.includes('/node_modules/ink/')),
    'importing the dashboard loads ink',
  );
  t.true(ui.urls.some(url => url.includes('/node_modules/react/')));
});
