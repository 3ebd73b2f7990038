/** A benchmark's command line: strict flags, `--help`/`-h`, and a usage message (exit 2) for anything wrong. */
import {parseArgs, type ParseArgsConfig} from 'node:util';

type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig['options']>;

type Parsed<O extends ParseArgsOptionsConfig> = ReturnType<typeof parseArgs<{args: string[]; options: O; strict: true}>>['values'];

export function parseArgsOrUsage<const O extends ParseArgsOptionsConfig>(argv: string[], options: O, usage: (message?: string) => never): Parsed<O> {
  let values: Parsed<O>;
  try {
    values = parseArgs({args: argv, options, strict: true}).values;
  } catch (error) {
    usage((error as Error).message);
  }
  if ((values as {help?: boolean}).help === true) {
    usage();
  }
  return values;
}
