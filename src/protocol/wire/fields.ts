/**
 * The field shapes several message families share: identifiers, byte and event counts, devices and
 * restart policies. Internal to the protocol module: the messages export what clients need.
 */
import {z} from 'zod';

export const id = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._:-]+$/, 'letters, digits, ".", "_", ":" and "-" only');
export const bytes = z.number().int().nonnegative();
export const count = z.number().int().nonnegative();

export const DeviceSchema = z.string().regex(/^(cpu|metal|cuda:\d{1,2})$/, 'one of "cpu", "metal", "cuda:N"');

/** N of a `cuda:N` device, nvidia-smi's index of the card; undefined for any other device. */
export function cudaIndex(device: string): number | undefined {
  const match = /^cuda:(\d+)$/.exec(device);
  return match === null ? undefined : Number(match[1]);
}

export const RestartPolicySchema = z.enum(['never', 'on-failure', 'always']);
export type RestartPolicy = z.infer<typeof RestartPolicySchema>;
