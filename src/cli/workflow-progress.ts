/**
 * `rbee workflow run --watch`: one progress bar per node, redrawn in place on a terminal; on a
 * log (no TTY) one line per node as it starts and as it finishes, no carriage returns.
 */
import type {WorkflowEvent} from '../protocol/wire.js';

export type ProgressStream = {write(chunk: string): unknown; isTTY?: boolean; columns?: number};

/** One node's bar: `node 3 (KSampler) [#######.......] 7/20`. */
export function nodeBar(node: string, classType: string | null, value: number, max: number, width = 24): string {
  const fraction = max > 0 ? Math.min(1, Math.max(0, value / max)) : 0;
  const filled = Math.round(fraction * width);
  return `node ${node}${classType === null ? '' : ` (${classType})`} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${value}/${max}`;
}

export function createWorkflowWatcher(stream: ProgressStream): {event(event: WorkflowEvent): void; done(): void} {
  const interactive = stream.isTTY === true;
  let current: {node: string; classType: string | null; value: number; max: number} | null = null;
  let drawn = false;
  const finishLine = () => {
    if (current !== null && drawn) {
      stream.write(interactive ? '\n' : `${nodeBar(current.node, current.classType, current.value, current.max)}\n`);
    }
    drawn = false;
  };
  const draw = () => {
    if (current === null) {
      return;
    }
    if (interactive) {
      stream.write(`\r${nodeBar(current.node, current.classType, current.value, current.max).slice(0, (stream.columns ?? 120) - 1)}`);
    }
    drawn = true;
  };
  return {
    event(event) {
      if (event.type === 'queued') {
        stream.write(`queued ${event.workflow_id} on ${event.worker_id} (${event.queue_position} ahead)\n`);
      } else if (event.type === 'executing') {
        finishLine();
        // A node without steps shows as one step: it ran, or it did not.
        current = {node: event.node, classType: event.class_type, value: 0, max: 1};
        draw();
      } else if (event.type === 'progress' && current !== null) {
        current = {...current, value: event.value, max: event.max};
        draw();
      } else if (event.type === 'executed' && current !== null && current.node === event.node) {
        current = {...current, value: current.max};
        draw();
      } else if (event.type === 'cached') {
        stream.write(`cached: node ${event.nodes.join(', ')}\n`);
      }
    },
    done() {
      if (current !== null && current.value < current.max && interactive) {
        current = {...current, value: current.max};
        draw();
      }
      finishLine();
      current = null;
    },
  };
}
