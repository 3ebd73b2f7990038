import type {AdapterContext} from '../../src/adapters/adapter-api.js';

/**
 * The context a worker gives its adapter, for tests that drive an adapter or a worker runtime
 * without a hive: no engine to spawn, progress and failures dropped, one CPU slot unless `overrides` say otherwise.
 */
export function testAdapterContext(overrides: Partial<AdapterContext> = {}): AdapterContext {
  const workerId = overrides.workerId ?? 'worker-test';
  return {
    workerId,
    modelPath: '/models/m',
    modelName: 'm',
    device: 'cpu',
    contextSize: 4_096,
    threads: 1,
    parallel: 1,
    log: () => undefined,
    freePort: async () => 0,
    spawnEngine: () => {
      throw new Error('no engines here');
    },
    reportLoadProgress: () => undefined,
    reportFailure: () => undefined,
    engineKey: `engine-key-of-${workerId}`,
    ...overrides,
  };
}
