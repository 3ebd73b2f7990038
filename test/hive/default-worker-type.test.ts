/**
 * The default worker type and the backends check come from what the adapters declare: the real
 * built-in adapters (their ranks cite bench/results files), a third-party plugin that runs on
 * cuda only, and declarations made up to pin down the ordering rules.
 */
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import test from 'ava';
import type {AdapterBackends} from '../../src/adapters/adapter-api.js';
import type {WorkerTypeSupport} from '../../src/adapters/adapter-backends.js';
import {RbeeError} from '../../src/errors.js';
import {checkRunsOn, defaultWorkerType} from '../../src/hive/default-worker-type.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));

/** The built-in adapters are built into dist/ (they import the `rbee` package), so they are loaded as the hive loads them. */
async function declared(entries: Array<string | [string, Record<string, unknown>]> = []): Promise<WorkerTypeSupport[]> {
  const [{loadAdapters}, {adapterBackends}] = await Promise.all([
    import(new URL('dist/adapters/load-adapters.js', `file://${root}/`).href) as Promise<typeof import('../../src/adapters/load-adapters.js')>,
    import(new URL('dist/adapters/adapter-backends.js', `file://${root}/`).href) as Promise<typeof import('../../src/adapters/adapter-backends.js')>,
  ]);
  const set = await loadAdapters({entries, baseDir: fixtures});
  if (set.errors.length > 0) {
    throw new Error(set.errors.map(error => `${error.source}: ${error.message}`).join('; '));
  }
  return Promise.all(set.adapters.map(async loaded => ({type: loaded.adapter.type, backends: await adapterBackends(loaded.adapter)})));
}

test('built-in adapters: llamacpp ranks first on cpu, candle on cuda, as the benchmarks put it', async t => {
  const offers = await declared();
  const llamacpp = offers.find(offer => offer.type === 'llamacpp')!.backends;
  t.is(llamacpp.cpu?.speed?.rank, 1);
  t.is(llamacpp.cuda?.speed?.rank, 2);
  const candle = offers.find(offer => offer.type === 'candle')!.backends;
  t.is(candle.cpu?.speed?.rank, 2);
  t.is(candle.cuda?.speed?.rank, 1);
  for (const device of ['cpu', 'metal']) {
    t.is(defaultWorkerType(device, offers), 'llamacpp', device);
  }
  // On cuda the default is candle where its build runs there; a CPU-only build declares cuda
  // unavailable, and then llamacpp is the default.
  const candleOnCuda = candle.cuda?.unavailable === undefined;
  for (const device of ['cuda:0', 'cuda:3']) {
    t.is(defaultWorkerType(device, offers), candleOnCuda ? 'candle' : 'llamacpp', device);
  }
  const withCudaCandle = offers.map(offer => (offer.type === 'candle' ? {...offer, backends: {...offer.backends, cuda: {speed: candle.cuda!.speed!}}} : offer));
  t.is(defaultWorkerType('cuda:0', withCudaCandle), 'candle', 'a CUDA build of candle ranks first');
  t.deepEqual(Object.keys(offers.find(offer => offer.type === 'tensorrt-llm')!.backends), ['cuda'], 'TensorRT-LLM: NVIDIA GPUs only');
});

test('every speed a built-in adapter declares cites a bench/results file that exists', async t => {
  const offers = await declared();
  let cited = 0;
  for (const offer of offers) {
    for (const [backend, support] of Object.entries(offer.backends)) {
      if (support?.speed === undefined) {
        continue;
      }
      const files = support.speed.source.match(/bench\/results\/[\w.-]+\.md/g) ?? [];
      t.true(files.length > 0, `${offer.type} on ${backend} cites no bench/results file: ${support.speed.source}`);
      for (const file of files) {
        t.true(fs.existsSync(path.join(root, file)), `${offer.type} on ${backend}: ${file}`);
        cited++;
      }
    }
  }
  t.true(cited >= 4);
});

test('a third-party plugin declaring cuda only: the default on cuda when it ranks first, refused on the CPU', async t => {
  const offers = await declared(['./adapter-cuda-only/index.js']);
  t.is(defaultWorkerType('cuda:0', offers), 'cuda-only', "rank 0.5 beats candle's and llama.cpp's");
  t.is(defaultWorkerType('cpu', offers), 'llamacpp');
  t.notThrows(() => checkRunsOn('cuda-only', 'cuda:1', offers));
  const error = t.throws(() => checkRunsOn('cuda-only', 'cpu', offers), {instanceOf: RbeeError});
  t.is(error.code, 'device_unsupported');
  t.is(error.status, 400);
  t.is(error.message, 'worker type "cuda-only" does not run on cpu: it runs on cuda; pick another --device or --type');
});

test('unranked, the plugin comes after every ranked type, and is the default where it is all there is', async t => {
  const offers = await declared([['./adapter-cuda-only/index.js', {unranked: true}]]);
  const candleOnCuda = offers.find(offer => offer.type === 'candle')!.backends.cuda?.unavailable === undefined;
  t.is(defaultWorkerType('cuda:0', offers), candleOnCuda ? 'candle' : 'llamacpp');
  const onlyPlugin = offers.map(offer => (offer.type === 'cuda-only' ? offer : {type: offer.type, backends: {}}));
  t.is(defaultWorkerType('cuda:0', onlyPlugin), 'cuda-only');
});

const made = (type: string, backends: AdapterBackends): WorkerTypeSupport => ({type, backends});

test('ordering: lowest rank first, unavailable ones skipped, ties and unranked in load order', t => {
  const offers = [
    made('first-loaded', {cpu: {}}),
    made('slow', {cpu: {speed: {rank: 3, source: 'x'}}}),
    made('fast-missing', {cpu: {unavailable: 'not installed', speed: {rank: 1, source: 'x'}}}),
    made('fast', {cpu: {speed: {rank: 2, source: 'x'}}}),
    made('fast-too', {cpu: {speed: {rank: 2, source: 'x'}}}),
  ];
  t.is(defaultWorkerType('cpu', offers), 'fast');
  t.is(
    defaultWorkerType(
      'cpu',
      offers.filter(offer => offer.type.startsWith('f') && offer.type !== 'fast'),
    ),
    'fast-too',
  );
  t.is(defaultWorkerType('cpu', [offers[0]!, made('other-unranked', {cpu: {}})]), 'first-loaded');
});

test('no type can run on the device: a 400 that says why for each', t => {
  const offers = [made('gpu-engine', {cuda: {unavailable: 'no gpu-engine program on PATH'}}), made('cpu-engine', {cpu: {}})];
  const error = t.throws(() => defaultWorkerType('cuda:0', offers), {instanceOf: RbeeError});
  t.is(error.code, 'device_unsupported');
  t.is(
    error.message,
    'no worker type can run on cuda:0 here (gpu-engine: no gpu-engine program on PATH; cpu-engine: does not run on cuda): install an engine that can, or name a type with --type',
  );
});

test('a type declared on the backend but unavailable here: refused with its reason and where it does run', t => {
  const offers = [made('candle-like', {cpu: {}, cuda: {unavailable: 'this build runs on cpu, not cuda: rebuild it with that feature'}})];
  const error = t.throws(() => checkRunsOn('candle-like', 'cuda:0', offers), {instanceOf: RbeeError});
  t.is(
    error.message,
    'worker type "candle-like" cannot run on cuda:0 here: this build runs on cpu, not cuda: rebuild it with that feature (here it runs on cpu)',
  );
  t.notThrows(() => checkRunsOn('candle-like', 'cpu', offers));
});
