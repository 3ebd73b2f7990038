/**
 * Shared by the candle engine's tests: whether the native binding is built, and small GGUF
 * files written from scratch (an unknown architecture, a truncated copy of the real model).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import {nativeBindingAvailable} from '../../src/native/index.js';

/**
 * Without `npm run build:native` these tests skip (and say why), so a machine without Rust
 * stays green; set RBEE_REQUIRE_NATIVE=1 (CI, once it builds the engine) to make a missing
 * binding a failure.
 */
export async function nativeTest() {
  const available = await nativeBindingAvailable();
  if (!available && process.env.RBEE_REQUIRE_NATIVE !== '1') {
    return {available, serial: test.serial.skip, test: test.skip};
  }
  return {available, serial: test.serial, test};
}

function ggufString(value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(bytes.length));
  return Buffer.concat([length, bytes]);
}

/** A valid GGUF (version 3) with string metadata only and no tensors. */
export function ggufWithMetadata(metadata: Record<string, string>): Buffer {
  const entries = Object.entries(metadata);
  const header = Buffer.alloc(24);
  header.write('GGUF', 0, 'latin1');
  header.writeUInt32LE(3, 4);
  header.writeBigUInt64LE(0n, 8);
  header.writeBigUInt64LE(BigInt(entries.length), 16);
  const parts: Buffer[] = [header];
  for (const [key, value] of entries) {
    const type = Buffer.alloc(4);
    type.writeUInt32LE(8); // GGUF_TYPE_STRING
    parts.push(ggufString(key), type, ggufString(value));
  }
  return Buffer.concat(parts);
}

export function tempFile(name: string, contents: Buffer): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-native-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, contents);
  return file;
}

/** The first `bytes` bytes of a file, as a new file. */
export function truncatedCopy(source: string, bytes: number): string {
  const fd = fs.openSync(source, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    const read = fs.readSync(fd, buffer, 0, bytes, 0);
    return tempFile('truncated.gguf', buffer.subarray(0, read));
  } finally {
    fs.closeSync(fd);
  }
}
