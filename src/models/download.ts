/**
 * Resumable, verified downloads. Models are hundreds of megabytes fetched over links that drop,
 * so a download writes to `<destination>.part`, picks up where it stopped (HTTP Range), checks
 * its sha256 and only then appears under its real name: a file at `destination` is always whole.
 */
import {createHash, type Hash} from 'node:crypto';
import {once} from 'node:events';
import {createReadStream, createWriteStream} from 'node:fs';
import fs from 'node:fs/promises';
import type {IncomingHttpHeaders} from 'node:http';
import path from 'node:path';
import {pipeline} from 'node:stream/promises';
import {setTimeout as sleep} from 'node:timers/promises';
import got, {AbortError, MaxRedirectsError, RequestError, type Response} from 'got';
import {RbeeError} from '../errors.js';

export type DownloadProgress = {phase: 'downloading'; done: number; total: number | null};

export type DownloadOptions = {
  url: string;
  destination: string;
  /** Wins over any checksum the server advertises. */
  expectedSha256?: string;
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** Further attempts after a transient failure; each one resumes from the part file. */
  retries?: number;
  /** First pause between attempts; doubles after each. */
  retryDelayMs?: number;
  /** Runs once the bytes are verified, before the file appears under `destination`: a crash in between leaves no unrecorded file. */
  beforeRename?: (verified: {sha256: string; size: number; checkedAgainst: DownloadResult['checkedAgainst']; partPath: string}) => Promise<void>;
};

export type DownloadResult = {
  path: string;
  sha256: string;
  size: number;
  /** Where the checksum was checked against: the caller's, the server's, or nowhere (computed here only). */
  checkedAgainst: 'expected' | 'server' | null;
};

const retryableStatuses = new Set([408, 425, 429, 500, 502, 503, 504]);
const transientCodes = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** A status we may retry on; turned into a download_failed RbeeError once attempts run out. */
class UnexpectedStatusError extends Error {
  constructor(
    readonly status: number,
    url: string,
  ) {
    super(`HTTP ${status} from ${url}`);
  }
}

/** The body ended before the length the server announced: resumable, so worth another attempt. */
class IncompleteBodyError extends Error {}

type AttemptResult = {kind: 'complete'; sha256: string; size: number} | {kind: 'restart'; reason: string};

type DownloadState = {
  options: DownloadOptions;
  partPath: string;
  /** Checksum a response in this download advertised; kept across attempts since a 416 may carry none. */
  advertisedSha256?: string;
};

export async function downloadFile(options: DownloadOptions): Promise<DownloadResult> {
  const {url, destination, signal} = options;
  const retries = options.retries ?? 4;
  const retryDelayMs = options.retryDelayMs ?? 500;
  const state: DownloadState = {options, partPath: `${destination}.part`};
  await fs.mkdir(path.dirname(destination), {recursive: true, mode: 0o700});

  for (let attempt = 0; ; attempt++) {
    signal?.throwIfAborted();
    let result: AttemptResult;
    try {
      result = await attemptDownload(state);
    } catch (error) {
      if (signal?.aborted) {
        // Keep the part file: the next call resumes it.
        throw signal.reason ?? error;
      }
      if (!isTransient(error) || attempt >= retries) {
        throw toDownloadError(error, url);
      }
      await sleep(retryDelayMs * 2 ** attempt, undefined, signal ? {signal} : {});
      continue;
    }

    if (result.kind === 'restart') {
      await fs.rm(state.partPath, {force: true});
      if (attempt >= retries) {
        throw new RbeeError('download_failed', `download of ${url} failed: ${result.reason}`);
      }
      continue;
    }

    const expected = options.expectedSha256?.toLowerCase() ?? state.advertisedSha256;
    if (expected !== undefined && expected !== result.sha256) {
      await fs.rm(state.partPath, {force: true});
      throw new RbeeError('checksum_mismatch', `download of ${url} has sha256 ${result.sha256}, expected ${expected}; the partial file was deleted`);
    }
    const checkedAgainst = options.expectedSha256 !== undefined ? 'expected' : state.advertisedSha256 !== undefined ? 'server' : null;
    await options.beforeRename?.({sha256: result.sha256, size: result.size, checkedAgainst, partPath: state.partPath});
    await fs.rename(state.partPath, destination);
    return {path: destination, sha256: result.sha256, size: result.size, checkedAgainst};
  }
}

async function attemptDownload(state: DownloadState): Promise<AttemptResult> {
  const {url, headers, signal, onProgress} = state.options;
  // Hash what is already stored before the request starts, so nothing waits on the response
  // stream while it is unconsumed (an error it emitted then would have no listener).
  const resumedHash = createHash('sha256');
  const existing = await hashInto(resumedHash, state.partPath);
  const requestHeaders: Record<string, string> = {
    ...headers,
    // Byte offsets must refer to the stored bytes, not to a decoded stream.
    'accept-encoding': 'identity',
    ...(existing > 0 ? {range: `bytes=${existing}-`} : {}),
  };

  const request = got.stream(url, {
    headers: requestHeaders,
    throwHttpErrors: false,
    decompress: false,
    retry: {limit: 0},
    timeout: {lookup: 30_000, connect: 30_000, secureConnect: 30_000, response: 60_000, socket: 60_000},
    ...(signal ? {signal} : {}),
  });
  // Hugging Face puts the LFS sha256 on the redirect, not on the CDN response it leads to.
  // got 14 emits (options, response) although its typings say (response, options): take whichever
  // argument is the response.
  request.on('redirect', (...args: unknown[]) => {
    const response = args.find((arg): arg is Response => typeof (arg as Response | null)?.statusCode === 'number');
    if (response) {
      noteAdvertisedSha256(state, response.headers);
    }
  });

  let response: Response;
  try {
    [response] = (await once(request, 'response')) as [Response];
  } catch (error) {
    request.destroy();
    throw error;
  }
  noteAdvertisedSha256(state, response.headers);
  const status = response.statusCode;

  if (status === 416 && existing > 0) {
    request.destroy();
    const total = parseUnsatisfiedRangeTotal(response.headers['content-range']);
    if (total !== null && total !== existing) {
      return {kind: 'restart', reason: `server reports ${total} bytes but ${existing} are stored`};
    }
    // The part already holds everything; it still has to pass the checksum.
    return {kind: 'complete', sha256: resumedHash.digest('hex'), size: existing};
  }
  if (status === 404) {
    request.destroy();
    throw new RbeeError('model_not_found', `${url} was not found (HTTP 404)`);
  }
  if (status !== 200 && status !== 206) {
    request.destroy();
    throw new UnexpectedStatusError(status, url);
  }

  let hash: Hash;
  let start: number;
  let total: number | null;
  const length = parseLength(response.headers['content-length']);
  if (status === 206) {
    const range = parseContentRange(response.headers['content-range']);
    if (range === null || range.start !== existing) {
      request.destroy();
      return {kind: 'restart', reason: 'server answered a range request with a different range'};
    }
    hash = resumedHash;
    start = existing;
    total = range.total ?? (length === null ? null : start + length);
  } else {
    // 200 to a range request: the server ignored the range and sends everything again.
    hash = createHash('sha256');
    start = 0;
    total = length;
  }

  let done = start;
  onProgress?.({phase: 'downloading', done, total});
  await pipeline(
    request,
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        hash.update(chunk);
        done += chunk.length;
        onProgress?.({phase: 'downloading', done, total});
        yield chunk;
      }
    },
    // 0600: model files live in RBEE_HOME, private to its owner.
    createWriteStream(state.partPath, {flags: status === 206 ? 'a' : 'w', mode: 0o600}),
  );
  if (total !== null && done !== total) {
    throw new IncompleteBodyError(`received ${done} of ${total} bytes from ${url}`);
  }
  return {kind: 'complete', sha256: hash.digest('hex'), size: done};
}

function noteAdvertisedSha256(state: DownloadState, headers: IncomingHttpHeaders): void {
  if (state.advertisedSha256 !== undefined) {
    return;
  }
  for (const name of ['x-linked-etag', 'etag']) {
    const value = headers[name];
    const match = typeof value === 'string' ? /^"([0-9a-fA-F]{64})"$/.exec(value.trim()) : null;
    if (match?.[1] !== undefined) {
      state.advertisedSha256 = match[1].toLowerCase();
      return;
    }
  }
}

function isTransient(error: unknown): boolean {
  if (error instanceof UnexpectedStatusError) {
    return retryableStatuses.has(error.status);
  }
  if (error instanceof IncompleteBodyError) {
    return true;
  }
  if (error instanceof AbortError || error instanceof MaxRedirectsError) {
    return false;
  }
  if (error instanceof RequestError) {
    // got wraps socket failures (resets, timeouts, aborted bodies) in RequestError subclasses.
    return error.name === 'ReadError' || error.name === 'TimeoutError' || transientCodes.has(error.code);
  }
  const code = (error as {code?: unknown} | null)?.code;
  return typeof code === 'string' && transientCodes.has(code);
}

function toDownloadError(error: unknown, url: string): RbeeError {
  if (error instanceof RbeeError) {
    return error;
  }
  if (error instanceof UnexpectedStatusError) {
    return new RbeeError('download_failed', `download of ${url} failed: HTTP ${error.status}`, {cause: error});
  }
  const message = error instanceof Error ? error.message : String(error);
  return new RbeeError('download_failed', `download of ${url} failed: ${message}`, {cause: error});
}

function parseLength(value: string | undefined): number | null {
  if (value === undefined || !/^\d+$/.test(value.trim())) {
    return null;
  }
  return Number(value);
}

function parseContentRange(value: string | undefined): {start: number; total: number | null} | null {
  const match = value === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim());
  if (!match?.[1] || !match[3]) {
    return null;
  }
  return {start: Number(match[1]), total: match[3] === '*' ? null : Number(match[3])};
}

function parseUnsatisfiedRangeTotal(value: string | undefined): number | null {
  const match = value === undefined ? null : /^bytes \*\/(\d+)$/.exec(value.trim());
  return match?.[1] ? Number(match[1]) : null;
}

/** Feeds a file into `hash`; returns its length, 0 for a missing file. */
async function hashInto(hash: Hash, file: string): Promise<number> {
  let size = 0;
  try {
    for await (const chunk of createReadStream(file)) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return 0;
    }
    throw error;
  }
  return size;
}

export async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}
