import {z} from 'zod';

/**
 * The HEAD frame of a worker link's answer (src/http/link-frames.ts): what the status line and
 * headers of the same answer over HTTP would say. Header names are lower case.
 */
export const LinkAnswerHeadSchema = z.strictObject({
  status: z.number().int().min(100).max(599),
  headers: z.record(z.string().regex(/^[a-z0-9-]+$/, 'a lower-case header name'), z.string()),
});
export type LinkAnswerHead = z.infer<typeof LinkAnswerHeadSchema>;
