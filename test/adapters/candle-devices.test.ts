import test from 'ava';
import {checkCandleGroup, engineDevice} from '../../adapters/candle/src/tensor-parallel.js';

test('a GPU worker the hive narrowed to its card sees it as cuda:0; by hand, cuda:N stays', t => {
  t.is(engineDevice('cuda:3', {CUDA_VISIBLE_DEVICES: '3'}), 'cuda:0');
  t.is(engineDevice('cuda:3', {CUDA_VISIBLE_DEVICES: '1, 3'}), 'cuda:1');
  t.is(engineDevice('cuda:3', {}), 'cuda:3', 'nothing narrowed');
  t.is(engineDevice('cuda:3', {CUDA_VISIBLE_DEVICES: ''}), 'cuda:3');
  t.is(engineDevice('cuda:3', {CUDA_VISIBLE_DEVICES: '0'}), 'cuda:3', 'a card the list hides is left for the engine to refuse');
  t.is(engineDevice('cpu', {CUDA_VISIBLE_DEVICES: '0'}), 'cpu');
});

test('a candle group is all CPUs or all GPUs: a mix is refused before the model is read', async t => {
  const error = await t.throwsAsync(checkCandleGroup({modelPath: '/nonexistent/model.gguf', devices: ['cpu', 'cuda:0']}));
  t.like(error, {code: 'invalid_request', field: 'devices'});
  t.regex(error.message, /^devices: a candle group runs on the CPU \(every device "cpu"\) or on CUDA GPUs \(every device cuda:N\), not on cpu,cuda:0$/);
});
