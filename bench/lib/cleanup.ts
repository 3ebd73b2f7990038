/**
 * Every process a benchmark starts registers its cleanup here, so a failure, Ctrl-C or the global
 * deadline still takes the hive (and through it its workers) and any peer process down.
 */

type Cleanup = {name: string; run: () => Promise<void>};

const cleanups = new Set<Cleanup>();
let installed = false;
let exiting = false;

export function onCleanup(name: string, run: () => Promise<void>): () => void {
  const entry: Cleanup = {name, run};
  cleanups.add(entry);
  return () => {
    cleanups.delete(entry);
  };
}

/** Runs every registered cleanup (newest first), each bounded in time. */
export async function cleanupAll(): Promise<void> {
  const entries = [...cleanups].reverse();
  cleanups.clear();
  for (const entry of entries) {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        entry.run(),
        new Promise<void>((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error('cleanup timed out')), 45_000);
        }),
      ]);
    } catch (error) {
      process.stderr.write(`[bench] cleanup of ${entry.name} failed: ${(error as Error).message}\n`);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Signals and a hard deadline end the run through the cleanups, never by leaving processes behind. */
export function installExitHandlers(deadlineMs: number): void {
  if (installed) {
    return;
  }
  installed = true;
  const bail = (why: string, code: number) => {
    if (exiting) {
      return;
    }
    exiting = true;
    process.stderr.write(`[bench] ${why}: cleaning up\n`);
    void cleanupAll().finally(() => process.exit(code));
  };
  process.once('SIGINT', () => bail('SIGINT', 130));
  process.once('SIGTERM', () => bail('SIGTERM', 143));
  process.on('uncaughtException', error => bail(`uncaught exception: ${error.stack ?? error.message}`, 1));
  process.on('unhandledRejection', error => bail(`unhandled rejection: ${(error as Error)?.stack ?? String(error)}`, 1));
  setTimeout(() => bail(`deadline of ${Math.round(deadlineMs / 1000)} s passed`, 124), deadlineMs).unref();
}
