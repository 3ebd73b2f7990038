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

export const RestartPolicySchema = z.enum(['never', 'on-failure', 'always']);
export type RestartPolicy = z.infer<typeof RestartPolicySchema>;
