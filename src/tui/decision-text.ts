import type {AutoscaleEvent} from '../protocol/wire.js';

/** A models-on-demand decision as the event line shows it. */
export function decisionText(event: AutoscaleEvent): string {
  const what = {
    'started-for-request': 'started for a request',
    'stopped-idle': 'stopped (idle)',
    'evicted-for': `stopped to make room for ${event.for ?? 'another model'}`,
    'refused-for': 'refused to start',
  }[event.action];
  return `${event.model} ${what}${event.device === null ? '' : ` on ${event.device}`}`;
}
