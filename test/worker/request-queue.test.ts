import test from 'ava';
import {RequestQueue} from '../../src/worker/request-queue.js';

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>(done => {
    resolve = done;
  });
  return {promise, resolve};
};

test('admits up to capacity, queues up to maxWaiting, refuses the rest with a 503', async t => {
  const queue = new RequestQueue({capacity: 2, maxWaiting: 1});
  const gate = deferred();
  const order: number[] = [];
  const runs = [1, 2, 3].map(id =>
    queue.run(async () => {
      order.push(id);
      await gate.promise;
      return id;
    }),
  );
  await Promise.resolve();
  t.is(queue.running, 2);
  t.is(queue.depth, 1);
  const refused = await t.throwsAsync(queue.run(async () => 4));
  t.is((refused as {status?: number}).status, 503);
  t.regex(refused?.message ?? '', /queue is full/);
  gate.resolve();
  t.deepEqual(await Promise.all(runs), [1, 2, 3]);
  t.deepEqual(order, [1, 2, 3], 'first in, first out');
  t.is(queue.running, 0);
});

test('a waiter whose client goes away leaves the queue', async t => {
  const queue = new RequestQueue({capacity: 1, maxWaiting: 4});
  const gate = deferred();
  const first = queue.run(() => gate.promise);
  const controller = new AbortController();
  const second = queue.run(async () => 'ran', controller.signal);
  t.is(queue.depth, 1);
  controller.abort();
  await t.throwsAsync(second, {message: /went away/});
  t.is(queue.depth, 0);
  gate.resolve();
  await first;
  t.is(queue.running, 0);
});

test('drain refuses new work but finishes what was admitted and queued', async t => {
  const queue = new RequestQueue({capacity: 1, maxWaiting: 4});
  const gate = deferred();
  const first = queue.run(() => gate.promise.then(() => 'first'));
  const queued = queue.run(async () => 'queued');
  queue.drain();
  await t.throwsAsync(
    queue.run(async () => 'late'),
    {message: /draining/},
  );
  gate.resolve();
  t.deepEqual(await Promise.all([first, queued]), ['first', 'queued']);
  await queue.idle();
});
