/** What an adapter declares it runs on is checked like any plugin input: statically at load, its probe's answer when asked. */
import test from 'ava';
import {assertAdapter, defineAdapter, type RbeeAdapter} from '../../src/adapters/adapter-api.js';
import {adapterBackends} from '../../src/adapters/adapter-backends.js';
import {RbeeError} from '../../src/errors.js';

const base = {
  name: 'acme:probe',
  type: 'probe',
  start: async () => {},
  infer: async () => ({text: '', tokensGenerated: 0, promptTokens: 0, finishReason: 'stop' as const}),
  stop: async () => {},
};

test('a declaration is kept as given; none at all runs anywhere, unranked', async t => {
  const declared = defineAdapter({...base, backends: {cuda: {speed: {rank: 1, source: 'bench/results/x.md'}}}});
  t.deepEqual(await adapterBackends(declared), {cuda: {speed: {rank: 1, source: 'bench/results/x.md'}}});
  t.deepEqual(await adapterBackends(defineAdapter(base)), {cpu: {}, cuda: {}, metal: {}});
});

test('a bad declaration fails the plugin at load, naming the field', t => {
  const unknownBackend = t.throws(() => assertAdapter({...base, backends: {tpu: {}}}, 'acme-plugin.js'), {instanceOf: RbeeError});
  t.regex(unknownBackend.message, /`backends` of adapter from acme-plugin\.js: `tpu`: unknown field/);
  const badRank = t.throws(() => assertAdapter({...base, backends: {cuda: {speed: {rank: -1, source: 'x'}}}}, 'acme-plugin.js'), {instanceOf: RbeeError});
  t.regex(badRank.message, /`cuda\.speed\.rank`/);
  t.throws(() => assertAdapter({...base, backends: 'cuda'}, 'acme-plugin.js'), {instanceOf: RbeeError});
});

test('a probe: its answer, checked; one that throws, answers nonsense or hangs makes the type unavailable everywhere, saying why', async t => {
  const probing = (backends: RbeeAdapter['backends']) => defineAdapter({...base, backends});
  t.deepEqual(await adapterBackends(probing(async () => ({cpu: {}, cuda: {unavailable: 'no driver'}}))), {cpu: {}, cuda: {unavailable: 'no driver'}});

  const threw = await adapterBackends(
    probing(() => {
      throw new Error('permission denied reading /dev/nvidia0');
    }),
  );
  t.deepEqual(Object.keys(threw), ['cpu', 'cuda', 'metal']);
  t.is(threw.cuda?.unavailable, 'adapter acme:probe could not tell where its engine runs: permission denied reading /dev/nvidia0');

  const nonsense = await adapterBackends(probing(async () => ({cuda: {speed: {rank: 'fast'}}}) as never));
  t.regex(nonsense.cpu?.unavailable ?? '', /^invalid backends\(\) of adapter acme:probe: `cuda\.speed\.rank`/);

  const hung = await adapterBackends(
    probing(() => new Promise(() => {})),
    {timeoutMs: 50},
  );
  t.is(hung.metal?.unavailable, 'adapter acme:probe could not tell where its engine runs: no answer in 0.05 s');
});
