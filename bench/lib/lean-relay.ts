/**
 * relay-floor.mjs's lean two-process relay (a "hive" and a "worker" doing the least rbee's must, with
 * none of rbee's code) in front of an engine a benchmark already runs, so that a TTFT probe can ask it
 * in the same rounds as straight and through rbee: what any relay of two Node processes adds on this
 * machine against this engine, beside what rbee adds. It takes rbee's `/v1/infer` body and answers
 * rbee's token and done events; it asks the engine's OpenAI `POST /v1/completions`.
 */
import {spawn, type ChildProcess} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

export type LeanRelay = {url: string; close(): void};

/** bench/relay-floor.mjs, from bench/lib/ (tsx) and from bench/.work/ (the esbuild bundles) alike. */
const script = fileURLToPath(new URL('../relay-floor.mjs', import.meta.url));

export async function startLeanRelay(engineOrigin: string): Promise<LeanRelay> {
  if (!fs.existsSync(script)) {
    throw new Error(`the lean relay needs ${script} (bench/relay-floor.mjs beside this benchmark)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-lean-relay-'));
  const children: ChildProcess[] = [];
  const close = () => {
    for (const child of children) {
      child.kill();
    }
    fs.rmSync(dir, {recursive: true, force: true});
  };
  const start = (args: string[]) =>
    new Promise<string | number>((resolve, reject) => {
      const child = spawn(process.execPath, [script, ...args], {stdio: ['ignore', 'inherit', 'inherit', 'ipc']});
      children.push(child);
      child.once('message', where => resolve(where as string | number));
      child.once('exit', code => reject(new Error(`the lean relay's ${args[0]} exited with ${code}`)));
    });
  try {
    const socketPath = await start(['worker', engineOrigin, path.join(dir, 'worker.sock')]);
    const port = await start(['hive', String(socketPath)]);
    return {url: `http://127.0.0.1:${port}`, close};
  } catch (error) {
    close();
    throw error;
  }
}
