import test from 'ava';
import {RbeeError} from '../../src/errors.js';
import {backendOf, defaultWorkerType, fastestEngines} from '../../src/hive/default-worker-type.js';

const everything = {types: ['llamacpp', 'candle', 'vllm'], candleBackends: ['cpu', 'cuda']};

test('the default is the first engine of the benchmark order that this hive can run on the device', t => {
  for (const device of ['cpu', 'cuda:0', 'metal']) {
    const expected = fastestEngines[backendOf(device)].find(type => type !== 'candle' || everything.candleBackends.includes(backendOf(device)));
    t.is(defaultWorkerType(device, everything), expected ?? 'none', device);
  }
});

test('candle is passed over where its build lacks the backend, and any loaded engine is taken before an error', t => {
  t.is(defaultWorkerType('cuda:1', {types: ['candle', 'llamacpp'], candleBackends: ['cpu']}), 'llamacpp');
  t.is(defaultWorkerType('cpu', {types: ['candle'], candleBackends: ['cpu']}), 'candle');
  const error = t.throws(() => defaultWorkerType('cuda:0', {types: ['candle', 'vllm'], candleBackends: []}), {instanceOf: RbeeError});
  t.regex(error.message, /no worker type can run on cuda:0 here: name one with --type/);
});
