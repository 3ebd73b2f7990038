import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {checkModelPath} from '../../src/hive/model-access.js';
import {tempHome} from '../helpers/rbee-process.js';

const root = tempHome('rbee-access-');
const allowed = path.join(root, 'models');
const outside = path.join(root, 'secret');
fs.mkdirSync(allowed);
fs.mkdirSync(outside);
fs.writeFileSync(path.join(allowed, 'a.gguf'), 'GGUF');
fs.writeFileSync(path.join(outside, 'b.gguf'), 'GGUF');
fs.symlinkSync(path.join(outside, 'b.gguf'), path.join(allowed, 'link.gguf'));

test.after.always(() => fs.rmSync(root, {recursive: true, force: true}));

test('a file inside an allowed folder is accepted', t => {
  t.is(checkModelPath(path.join(allowed, 'a.gguf'), [allowed]), fs.realpathSync(path.join(allowed, 'a.gguf')));
});

test('.. out of the allowed folder is refused', t => {
  const error = t.throws(() => checkModelPath(path.join(allowed, '..', 'secret', 'b.gguf'), [allowed]));
  t.regex(error?.message ?? '', /outside the allowed model folders/);
});

test('a symlink pointing out of the allowed folder is refused', t => {
  t.throws(() => checkModelPath(path.join(allowed, 'link.gguf'), [allowed]), {message: /outside the allowed model folders/});
});

test('with no folders configured any existing file is accepted; a missing one is model_not_found', t => {
  t.truthy(checkModelPath(path.join(outside, 'b.gguf'), null));
  const error = t.throws(() => checkModelPath(path.join(outside, 'nope.gguf'), null));
  t.is((error as {code?: string}).code, 'model_not_found');
});
