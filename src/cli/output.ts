/**
 * How every command reports: `--json` prints exactly one JSON document on stdout; otherwise a
 * human text. Failures are one line on stderr and a documented exit code.
 */
import {isRbeeError, type ErrorCode} from '../errors.js';

export const exitCodes = {
  ok: 0,
  failure: 1,
  usage: 2,
  hiveUnreachable: 3,
  notFound: 4,
  timeout: 5,
} as const;

const exitCodeByError: Partial<Record<ErrorCode, number>> = {
  hive_unreachable: exitCodes.hiveUnreachable,
  not_found: exitCodes.notFound,
  worker_not_found: exitCodes.notFound,
  group_not_found: exitCodes.notFound,
  model_not_found: exitCodes.notFound,
  timeout: exitCodes.timeout,
  invalid_request: exitCodes.usage,
  device_unsupported: exitCodes.usage,
};

export type OutputOptions = {json?: boolean | undefined};

export function emit(options: OutputOptions, data: unknown, human: () => string): void {
  if (options.json === true) {
    process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
  } else {
    const text = human();
    if (text !== '') {
      process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    }
  }
}

export function reportFailure(error: unknown, options: OutputOptions): number {
  const code: ErrorCode = isRbeeError(error) ? error.code : 'internal';
  const message = error instanceof Error ? error.message : String(error);
  if (options.json === true) {
    process.stdout.write(`${JSON.stringify({error: {code, message}})}\n`);
  }
  process.stderr.write(`rbee: ${message.split('\n')[0]} [${code}]\n`);
  return exitCodeByError[code] ?? exitCodes.failure;
}
