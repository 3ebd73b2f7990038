/** The hive's own tally of tokens relayed per worker: counted as added, forgetting workers the hive no longer has. */
import test from 'ava';
import {RelayedTokens} from '../../src/hive/relayed-tokens.js';

test('tokens add up per worker; a worker the hive no longer has is forgotten when another is first counted', t => {
  const workers = new Set(['worker-a', 'worker-b']);
  const relayed = new RelayedTokens(id => workers.has(id));
  relayed.add('worker-a', 3);
  relayed.add('worker-a', 4);
  relayed.add('worker-b', 0);
  t.is(relayed.of('worker-a'), 7);
  t.is(relayed.of('worker-b'), 0);
  workers.delete('worker-a');
  t.is(relayed.of('worker-a'), 7, 'kept until the tally next grows');
  workers.add('worker-c');
  relayed.add('worker-c', 1);
  t.is(relayed.of('worker-a'), 0);
  t.is(relayed.of('worker-c'), 1);
});
