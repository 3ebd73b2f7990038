/** The last lines of the selected worker's log, re-read every second while the log pane is open. */
import {useEffect, useState} from 'react';
import type {DashboardApi, LogTail} from '../dashboard-api.js';

export function useWorkerLog(api: DashboardApi, workerId: string | null, enabled: boolean, lines: number, everyMs = 1_000): LogTail | null {
  const [tail, setTail] = useState<LogTail | null>(null);
  useEffect(() => {
    if (!enabled || workerId === null) {
      setTail(null);
      return;
    }
    let stopped = false;
    let reading = false;
    const read = () => {
      if (reading) {
        return;
      }
      reading = true;
      api
        .workerLog(workerId, lines)
        .then(
          next => {
            if (!stopped) {
              setTail(previous => (previous !== null && previous.note === next.note && previous.lines.join('\n') === next.lines.join('\n') ? previous : next));
            }
          },
          error => {
            if (!stopped) {
              setTail({path: '', lines: [], note: `log unreadable: ${(error as Error).message}`});
            }
          },
        )
        .finally(() => {
          reading = false;
        });
    };
    read();
    const poll = setInterval(read, everyMs);
    return () => {
      stopped = true;
      clearInterval(poll);
    };
  }, [api, workerId, enabled, lines, everyMs]);
  return tail;
}
