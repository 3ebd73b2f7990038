/**
 * A checksum sidecar (`<file>.sha256`) for every downloaded model file: the sha256 the hub gave
 * (or, where it gave none, the one computed as the download ended), the size and the mtime. A file
 * that changed after its download (truncated by a full disk, edited, half-copied) is caught before
 * an engine loads it: the size on every use (a stat), the whole hash on `model pull` and whenever
 * the size or mtime no longer match.
 */
import fs from 'node:fs/promises';
import {z} from 'zod';
import {writePrivateFileAtomically} from '../config/private-home.js';
import {RbeeError} from '../errors.js';
import {hashFile} from './download.js';

const SidecarSchema = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
  mtime_ms: z.number().nonnegative(),
  /** `hub`: the server's (or the reference's) checksum matched; `computed`: hashed here, nothing to compare with. */
  source: z.enum(['hub', 'computed']),
});
export type CacheChecksum = z.infer<typeof SidecarSchema>;

/** How hard `verifyCachedFile` looks: `quick` trusts an unchanged size and mtime; `full` always hashes. */
export type VerifyDepth = 'quick' | 'full';

export function checksumSidecarPath(file: string): string {
  return `${file}.sha256`;
}

export async function readCacheChecksum(file: string): Promise<CacheChecksum | null> {
  try {
    const parsed = SidecarSchema.safeParse(JSON.parse(await fs.readFile(checksumSidecarPath(file), 'utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Records `sidecar` for `file` atomically (a reader sees the old one or the new one), 0600. */
export async function writeCacheChecksum(file: string, sidecar: CacheChecksum): Promise<void> {
  writePrivateFileAtomically(checksumSidecarPath(file), `${JSON.stringify(sidecar)}\n`);
}

function damaged(file: string, why: string, pullCommand: string): RbeeError {
  return new RbeeError('damaged_cache_entry', `damaged cache entry ${file}: ${why}; run \`${pullCommand}\``);
}

/**
 * Checks a cached file against its sidecar; throws `damaged_cache_entry` (naming `pullCommand`,
 * the way to fetch it again) when it no longer matches. `expectedSha256`: a checksum the model
 * reference pins, which the recorded one must be.
 */
export async function verifyCachedFile(options: {
  file: string;
  sidecar: CacheChecksum;
  depth: VerifyDepth;
  pullCommand: string;
  expectedSha256?: string | undefined;
}): Promise<void> {
  const {file, sidecar, pullCommand} = options;
  if (options.expectedSha256 !== undefined && options.expectedSha256.toLowerCase() !== sidecar.sha256) {
    throw damaged(file, `it was downloaded with sha256 ${sidecar.sha256}, the reference asks for ${options.expectedSha256.toLowerCase()}`, pullCommand);
  }
  let stats;
  try {
    stats = await fs.stat(file);
  } catch (error) {
    throw damaged(file, `cannot read it: ${(error as Error).message}`, pullCommand);
  }
  if (stats.size !== sidecar.size) {
    throw damaged(file, `${stats.size} bytes where ${sidecar.size} were downloaded`, pullCommand);
  }
  // Within a millisecond: tools that keep mtimes (cp -p, rsync -t) do not all keep the nanoseconds.
  const unchanged = Math.abs(stats.mtimeMs - sidecar.mtime_ms) < 1;
  if (options.depth === 'quick' && unchanged) {
    return;
  }
  const sha256 = await hashFile(file);
  if (sha256 !== sidecar.sha256) {
    throw damaged(file, `its sha256 is ${sha256}, ${sidecar.sha256} was downloaded`, pullCommand);
  }
  if (!unchanged) {
    // Touched but whole (copied back, say): the next quick check need not hash it again.
    await writeCacheChecksum(file, {...sidecar, mtime_ms: stats.mtimeMs});
  }
}
