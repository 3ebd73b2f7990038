/** Keys to intents, and the view reducer. */
import test from 'ava';
import {initialView, keyIntent, reduceView, type ViewAction, type ViewState} from '../../src/tui/view-state.js';

const ids = ['w-a', 'w-b', 'w-c'];

test('moves clamp at both ends; an unknown selection counts as the first line', t => {
  let view = reduceView(initialView, {type: 'move', delta: 1, ids});
  t.is(view.selectedId, 'w-b');
  view = reduceView(view, {type: 'move', delta: 10, ids});
  t.is(view.selectedId, 'w-c');
  view = reduceView(view, {type: 'move', delta: -10, ids});
  t.is(view.selectedId, 'w-a');
  t.is(reduceView({...initialView, selectedId: 'gone'}, {type: 'move', delta: 1, ids}).selectedId, 'w-b');
  t.is(reduceView(initialView, {type: 'move', delta: 1, ids: []}), initialView);
});

test('keys: j/k and arrows move, s and r ask, q quits, and only y confirms', t => {
  t.deepEqual(keyIntent(initialView, 'j', {}), {kind: 'view', action: {type: 'move', delta: 1}});
  t.deepEqual(keyIntent(initialView, '', {upArrow: true}), {kind: 'view', action: {type: 'move', delta: -1}});
  t.deepEqual(keyIntent(initialView, 's', {}), {kind: 'ask', action: 'stop'});
  t.deepEqual(keyIntent(initialView, 'r', {}), {kind: 'ask', action: 'restart'});
  t.deepEqual(keyIntent(initialView, 'q', {}), {kind: 'quit'});
  const asking: ViewState = {...initialView, confirm: {action: 'stop', workerId: 'w-a'}};
  t.deepEqual(keyIntent(asking, 'y', {}), {kind: 'confirmed', action: 'stop', workerId: 'w-a'});
  t.deepEqual(keyIntent(asking, 'q', {}), {kind: 'view', action: {type: 'answer'}}, 'q answers no, it does not quit mid-question');
  t.deepEqual(keyIntent(asking, 'j', {}), {kind: 'view', action: {type: 'answer'}});
});

test('the filter takes typed text until enter (keeps) or escape (clears)', t => {
  let view = reduceView(initialView, {type: 'filter-start'});
  for (const input of ['g', 'e', 'x']) {
    const intent = keyIntent(view, input, {});
    if (intent.kind !== 'view') {
      return t.fail(`"${input}" is not text: ${intent.kind}`);
    }
    view = reduceView(view, intent.action as ViewAction);
  }
  t.is(view.filter, 'gex');
  t.deepEqual(keyIntent(view, 'q', {}), {kind: 'view', action: {type: 'filter-input', text: 'q'}}, 'q is text while typing');
  view = reduceView(view, {type: 'filter-backspace'});
  t.is(view.filter, 'ge');
  const kept = reduceView(view, {type: 'filter-end', keep: true});
  t.false(kept.editingFilter);
  t.is(kept.filter, 'ge');
  t.deepEqual(keyIntent(kept, '', {escape: true}), {kind: 'view', action: {type: 'filter-end', keep: false}});
  t.is(reduceView(view, {type: 'filter-end', keep: false}).filter, '');
});

test('pending actions are tracked per worker and end with a notice', t => {
  let view = reduceView(initialView, {type: 'started', action: 'stop', workerId: 'w-a'});
  t.deepEqual(view.pending, {'w-a': 'stop'});
  view = reduceView(view, {type: 'finished', workerId: 'w-a', notice: {text: 'w-a stopped', tone: 'success'}});
  t.deepEqual(view.pending, {});
  t.is(view.notice?.text, 'w-a stopped');
});
