// llama-server for the plain-JS GPU benches (batching.mjs, ttft-vram.mjs), which run from the
// unpacked files of bench/gpu/*-on-gpu.sh beside this one: started from a bin folder on a loopback
// port, waited for until /health answers, stopped with its exit awaited.
import {spawn} from 'node:child_process';
import path from 'node:path';
import {setTimeout as sleep} from 'node:timers/promises';

/** Starts `<dir>/llama-server args… --host 127.0.0.1 --port port`; resolves once it is healthy. */
export async function startLlamaServer(dir, args, port) {
  const child = spawn(path.join(dir, 'llama-server'), [...args, '--host', '127.0.0.1', '--port', String(port)], {
    env: {...process.env, LD_LIBRARY_PATH: dir},
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', d => (stderr = (stderr + d).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    child.kill('SIGTERM');
    await new Promise(resolve => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
  };
  try {
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`llama-server exited ${child.exitCode}: ${stderr.slice(-800)}`);
      const healthy = await fetch(`${url}/health`).then(
        r => r.ok,
        () => false,
      );
      if (healthy) return {url, pid: child.pid, args: [...args, '--host', '127.0.0.1', '--port', String(port)], stop};
      if (Date.now() > deadline) throw new Error(`llama-server not healthy in 120 s: ${stderr.slice(-800)}`);
      await sleep(100);
    }
  } catch (error) {
    await stop();
    throw error;
  }
}
