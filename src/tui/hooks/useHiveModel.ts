/**
 * The hive as the dashboard sees it: the event feed and GET /v1/status folded into the model by
 * its reducer, plus a clock tick so ages and staleness move between events.
 */
import {useEffect, useReducer} from 'react';
import type {DashboardApi} from '../dashboard-api.js';
import {startEventFeed, type Backoff} from '../event-feed.js';
import {initialModel, reduceModel, type HiveModel} from '../model.js';

export type HiveModelOptions = {
  /** Heartbeat batching (one render per batch). Default 200 ms: at most 5 data frames a second. */
  flushMs?: number;
  /** How often devices are read from GET /v1/status while connected. Default 5 s. */
  statusEveryMs?: number;
  /** How often ages are recomputed without events. Default 1 s. */
  tickMs?: number;
  backoff?: Backoff;
};

export function useHiveModel(api: DashboardApi, options: HiveModelOptions = {}): HiveModel {
  const [model, dispatch] = useReducer(reduceModel, undefined, () => initialModel(api.url, Date.now()));
  const live = model.connection.phase === 'live';
  // Primitives, not the object: a caller's inline options must not restart the feed on every render.
  const initialMs = options.backoff?.initialMs;
  const maxMs = options.backoff?.maxMs;

  useEffect(() => {
    let lastEvents = 0;
    const feed = startEventFeed({
      api,
      onEvents: events => {
        lastEvents = Date.now();
        dispatch({type: 'events', events, now: lastEvents});
      },
      onConnection: connection => dispatch({type: 'connection', connection}),
      onRejected: count => dispatch({type: 'rejected', count}),
      ...(options.flushMs === undefined ? {} : {flushMs: options.flushMs}),
      ...(initialMs === undefined || maxMs === undefined ? {} : {backoff: {initialMs, maxMs}}),
    });
    // Ages move between events; while events come, each batch already moves them.
    const tickMs = options.tickMs ?? 1_000;
    const tick = setInterval(() => {
      const now = Date.now();
      if (now - lastEvents >= tickMs) {
        dispatch({type: 'tick', now});
      }
    }, tickMs);
    return () => {
      feed.stop();
      clearInterval(tick);
    };
  }, [api, options.flushMs, options.tickMs, initialMs, maxMs]);

  useEffect(() => {
    if (!live) {
      return;
    }
    let stopped = false;
    const read = () => {
      api.status().then(
        status => {
          if (!stopped) {
            dispatch({type: 'status', status, now: Date.now()});
          }
        },
        () => undefined,
      ); // devices stay as last read; the event stream reports the connection
    };
    read();
    const poll = setInterval(read, options.statusEveryMs ?? 5_000);
    return () => {
      stopped = true;
      clearInterval(poll);
    };
  }, [api, live, options.statusEveryMs]);

  return model;
}
