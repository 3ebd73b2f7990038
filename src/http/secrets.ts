/**
 * Secrets compared and stored without leaking them: equal-length digests compared in constant
 * time (a byte-by-byte compare would tell a guesser from its timing how far it got), and hashes
 * stored instead of the secret (they are random 192-bit tokens: a plain sha256 is enough).
 */
import {createHash, createHmac, randomBytes, timingSafeEqual} from 'node:crypto';

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Whether `given` equals `expected`, in time independent of where they differ (and of their lengths). */
export function sameSecret(given: string | undefined, expected: string): boolean {
  if (given === undefined) {
    return false;
  }
  return timingSafeEqual(createHash('sha256').update(given).digest(), createHash('sha256').update(expected).digest());
}

/** Whether sha256(`given`) is `expectedHashHex`, compared in constant time. */
export function matchesHash(given: string | undefined, expectedHashHex: string): boolean {
  if (given === undefined) {
    return false;
  }
  const expected = Buffer.from(expectedHashHex, 'hex');
  const actual = createHash('sha256').update(given).digest();
  return expected.length === actual.length && timingSafeEqual(actual, expected);
}

export function randomSecret(): string {
  return randomBytes(24).toString('hex');
}

/**
 * Keys already derived, by secret: the hive derives a worker's key for every request it relays (an
 * HMAC each, tens of µs of every answer's first token on a small machine). Bounded: secrets of
 * workers long gone are dropped with the rest when it fills.
 */
const workerKeys = new Map<string, string>();
const maxWorkerKeys = 1_024;

/**
 * The key a worker's own HTTP server demands, derived from the heartbeat secret the hive gave it:
 * whoever holds the key (the hive's proxy, a coordinator probing its shard) cannot derive the secret
 * from it and forge the worker's heartbeats.
 */
export function workerKeyOf(secret: string): string {
  let key = workerKeys.get(secret);
  if (key === undefined) {
    key = createHmac('sha256', secret).update('rbee worker key v1').digest('hex');
    if (workerKeys.size >= maxWorkerKeys) {
      workerKeys.clear();
    }
    workerKeys.set(secret, key);
  }
  return key;
}

/** The bearer credential of an `Authorization` header, if any. */
export function bearer(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^Bearer\s+(.+)$/i.exec(header);
  return match?.[1];
}
