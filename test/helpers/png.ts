/**
 * A whole-file PNG decoder for tests (8-bit greyscale, RGB or RGBA, not interlaced: what ComfyUI's
 * SaveImage writes): every chunk's CRC checked, the IDAT stream inflated, each scanline's filter
 * undone. Throws on anything it cannot decode, so "the image decodes" means all of it did.
 */
import zlib from 'node:zlib';

export type DecodedPng = {width: number; height: number; channels: number; pixels: Buffer};

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const CHANNELS: Record<number, number> = {0: 1, 2: 3, 6: 4};

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

export function decodePng(file: Buffer): DecodedPng {
  if (!file.subarray(0, 8).equals(SIGNATURE)) {
    throw new Error('not a PNG: bad signature');
  }
  let header: {width: number; height: number; channels: number} | null = null;
  const data: Buffer[] = [];
  let ended = false;
  for (let at = 8; at < file.length && !ended;) {
    const length = file.readUInt32BE(at);
    const type = file.subarray(at + 4, at + 8).toString('latin1');
    const body = file.subarray(at + 8, at + 8 + length);
    if (body.length !== length || at + 12 + length > file.length) {
      throw new Error(`chunk ${type} runs past the end of the file`);
    }
    if (zlib.crc32(file.subarray(at + 4, at + 8 + length)) !== file.readUInt32BE(at + 8 + length)) {
      throw new Error(`chunk ${type}: CRC mismatch`);
    }
    if (type === 'IHDR') {
      const [depth, color, , , interlace] = body.subarray(8, 13);
      const channels = CHANNELS[color!];
      if (depth !== 8 || channels === undefined || interlace !== 0) {
        throw new Error(`unsupported PNG: depth ${depth}, colour type ${color}, interlace ${interlace}`);
      }
      header = {width: body.readUInt32BE(0), height: body.readUInt32BE(4), channels};
    } else if (type === 'IDAT') {
      data.push(body);
    } else if (type === 'IEND') {
      ended = true;
    }
    at += 12 + length;
  }
  if (header === null || !ended) {
    throw new Error(`PNG without ${header === null ? 'IHDR' : 'IEND'}`);
  }
  const {width, height, channels} = header;
  const stride = width * channels;
  const raw = zlib.inflateSync(Buffer.concat(data));
  if (raw.length !== height * (stride + 1)) {
    throw new Error(`image data holds ${raw.length} bytes, ${height} rows of ${stride + 1} expected`);
  }
  const pixels = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const left = x >= channels ? pixels[y * stride + x - channels]! : 0;
      const up = y > 0 ? pixels[(y - 1) * stride + x]! : 0;
      const upLeft = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels]! : 0;
      const predictor = [0, left, up, (left + up) >> 1, paeth(left, up, upLeft)][filter];
      if (predictor === undefined) {
        throw new Error(`row ${y}: unknown filter ${filter}`);
      }
      pixels[y * stride + x] = (line[x]! + predictor) & 0xff;
    }
  }
  return {width, height, channels, pixels};
}
