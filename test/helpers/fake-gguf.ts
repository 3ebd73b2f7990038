/** Bytes that pass rbee's GGUF header check (magic, version 3, 1 tensor, 1 metadata entry), then `body`. */
export function fakeGguf(body: Buffer): Buffer {
  const header = Buffer.alloc(24);
  header.write('GGUF', 0, 'latin1');
  header.writeUInt32LE(3, 4);
  header.writeBigUInt64LE(1n, 8);
  header.writeBigUInt64LE(1n, 16);
  return Buffer.concat([header, body]);
}
