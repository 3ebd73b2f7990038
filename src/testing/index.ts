/**
 * `rbee/testing`: what an adapter plugin's own tests import. The harness runs the adapter's real
 * engine through the worker's lifecycle with no hive (see docs/adapters.md).
 */
export {createAdapterHarness, type AdapterHarness, type AdapterHarnessOptions, type HarnessInferInput, type HarnessInferResult} from './adapter-harness.js';
