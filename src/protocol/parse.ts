import type {z} from 'zod';

export type FieldIssue = {field: string; message: string};

export type ParseResult<T> = {ok: true; value: T} | {ok: false; issues: FieldIssue[]; message: string};

/**
 * Validates a wire message and, on failure, says which fields are wrong in one line, so the
 * 4xx body and the CLI error both name the field: "heartbeat: `vram_used`: expected number, received string".
 */
export function parseWire<S extends z.ZodType>(schema: S, value: unknown, what: string): ParseResult<z.output<S>> {
  const result = schema.safeParse(value);
  if (result.success) {
    return {ok: true, value: result.data};
  }
  const issues = result.error.issues.flatMap((issue): FieldIssue[] => {
    const at = issue.path.map(String);
    // A strict schema's unknown keys are named one by one, each as the field at fault.
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map(key => ({field: [...at, key].join('.'), message: 'unknown field'}));
    }
    return [{field: at.length === 0 ? '(body)' : at.join('.'), message: issue.message}];
  });
  const listed = issues
    .slice(0, 5)
    .map(issue => `\`${issue.field}\`: ${issue.message}`)
    .join('; ');
  const more = issues.length > 5 ? ` (and ${issues.length - 5} more)` : '';
  return {ok: false, issues, message: `invalid ${what}: ${listed}${more}`};
}
