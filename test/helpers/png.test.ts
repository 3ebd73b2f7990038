import zlib from 'node:zlib';
import test from 'ava';
import {decodePng} from './png.js';

function chunk(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), body])));
  return Buffer.concat([head, body, crc]);
}

/** A 3x2 RGB image whose rows use the Sub and Paeth filters. */
function sample(): {file: Buffer; pixels: number[]} {
  const pixels = [10, 20, 30, 40, 50, 60, 70, 80, 90, 1, 2, 3, 200, 100, 50, 255, 0, 128];
  const stride = 9;
  const rows: number[] = [];
  // Row 0, Sub: each byte minus the byte one pixel to its left.
  rows.push(1, ...pixels.slice(0, stride).map((v, x) => (v - (x >= 3 ? pixels[x - 3]! : 0)) & 0xff));
  // Row 1, Paeth.
  const paeth = (a: number, b: number, c: number) => {
    const p = a + b - c;
    const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
  };
  rows.push(
    4,
    ...pixels.slice(stride).map((v, x) => {
      const left = x >= 3 ? pixels[stride + x - 3]! : 0;
      const upLeft = x >= 3 ? pixels[x - 3]! : 0;
      return (v - paeth(left, pixels[x]!, upLeft)) & 0xff;
    }),
  );
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(3, 0);
  ihdr.writeUInt32BE(2, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const file = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.from(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
  return {file, pixels};
}

test('decodes every row through its filter', t => {
  const {file, pixels} = sample();
  const png = decodePng(file);
  t.like(png, {width: 3, height: 2, channels: 3});
  t.deepEqual([...png.pixels], pixels);
});

test('a damaged chunk, a truncated file or missing rows are errors', t => {
  const {file} = sample();
  const flipped = Buffer.from(file);
  flipped[40] = flipped[40]! ^ 1;
  t.throws(() => decodePng(flipped), {message: /CRC mismatch|runs past/});
  t.throws(() => decodePng(file.subarray(0, file.length - 12)), {message: /without IEND/});
  t.throws(() => decodePng(Buffer.from('GIF89a')), {message: /signature/});
});
