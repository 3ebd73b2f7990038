/**
 * The dashboard's own state (selection, filter, panes, the y/n question, notices) and the key map:
 * keys become intents here, purely; the Dashboard component carries out the ones that call the hive.
 */

import {sortKeys, type SortKey} from './rows.js';

export type Notice = {text: string; tone: 'info' | 'success' | 'error'};

export type WorkerAction = 'stop' | 'restart';

export type ViewState = {
  selectedId: string | null;
  filter: string;
  editingFilter: boolean;
  showLogs: boolean;
  showHelp: boolean;
  /** Show workers that had already ended when the dashboard started. */
  showHistory: boolean;
  confirm: {action: WorkerAction; workerId: string} | null;
  notice: Notice | null;
  /** Stops and restarts this dashboard has asked for and not yet heard back about. */
  pending: Readonly<Record<string, WorkerAction>>;
  sort: SortKey;
  /** Workers this dashboard restarted: new id → the id it replaced (the row stays in place, linked). */
  links: ReadonlyMap<string, string>;
};

export type ViewAction =
  | {type: 'move'; delta: number; ids: readonly string[]}
  | {type: 'select'; id: string}
  | {type: 'filter-start'}
  | {type: 'filter-input'; text: string}
  | {type: 'filter-backspace'}
  | {type: 'filter-end'; keep: boolean}
  | {type: 'toggle'; pane: 'logs' | 'help' | 'history'}
  | {type: 'ask'; action: WorkerAction; workerId: string}
  | {type: 'answer'}
  | {type: 'started'; action: WorkerAction; workerId: string}
  | {type: 'finished'; workerId: string; notice: Notice}
  | {type: 'notice'; notice: Notice | null}
  | {type: 'sort'}
  | {type: 'link'; from: string; to: string};

export const initialView: ViewState = {
  selectedId: null,
  filter: '',
  editingFilter: false,
  showLogs: false,
  showHelp: false,
  showHistory: false,
  confirm: null,
  notice: null,
  pending: {},
  sort: 'started',
  links: new Map(),
};

export function reduceView(view: ViewState, action: ViewAction): ViewState {
  switch (action.type) {
    case 'move': {
      if (action.ids.length === 0) {
        return view;
      }
      // A selection that is not in the table (none yet, filtered out, gone) shows as the first line.
      const current = view.selectedId === null ? -1 : action.ids.indexOf(view.selectedId);
      const from = current === -1 ? 0 : current;
      const index = Math.min(action.ids.length - 1, Math.max(0, from + action.delta));
      return {...view, selectedId: action.ids[index]!};
    }
    case 'select':
      return {...view, selectedId: action.id};
    case 'filter-start':
      return {...view, editingFilter: true, showHelp: false};
    case 'filter-input':
      return {...view, filter: view.filter + action.text};
    case 'filter-backspace':
      return {...view, filter: view.filter.slice(0, -1)};
    case 'filter-end':
      return {...view, editingFilter: false, filter: action.keep ? view.filter.trim() : ''};
    case 'toggle':
      if (action.pane === 'logs') {
        return {...view, showLogs: !view.showLogs, showHelp: false};
      }
      if (action.pane === 'help') {
        return {...view, showHelp: !view.showHelp};
      }
      return {...view, showHistory: !view.showHistory};
    case 'ask':
      return {...view, confirm: {action: action.action, workerId: action.workerId}, notice: null};
    case 'answer':
      return {...view, confirm: null};
    case 'started':
      return {...view, pending: {...view.pending, [action.workerId]: action.action}};
    case 'finished': {
      const {[action.workerId]: _done, ...pending} = view.pending;
      return {...view, pending, notice: action.notice};
    }
    case 'notice':
      return {...view, notice: action.notice};
    case 'sort':
      return {...view, sort: sortKeys[(sortKeys.indexOf(view.sort) + 1) % sortKeys.length]!};
    case 'link':
      return {...view, links: new Map(view.links).set(action.to, action.from)};
  }
}

/** The keys a dashboard cares about, as ink's useInput reports them. */
export type KeyPress = {
  upArrow?: boolean;
  downArrow?: boolean;
  pageUp?: boolean;
  pageDown?: boolean;
  return?: boolean;
  escape?: boolean;
  backspace?: boolean;
  delete?: boolean;
  ctrl?: boolean;
  meta?: boolean;
  tab?: boolean;
};

export type Intent =
  | {kind: 'none'}
  | {kind: 'quit'}
  | {kind: 'view'; action: ViewAction | {type: 'move'; delta: number}}
  | {kind: 'ask'; action: WorkerAction}
  | {kind: 'confirmed'; action: WorkerAction; workerId: string};

const none: Intent = {kind: 'none'};
const view = (action: ViewAction | {type: 'move'; delta: number}): Intent => ({kind: 'view', action});

/** What a key press means in the current state. Moves carry no ids: the caller adds the table's. */
export function keyIntent(state: ViewState, input: string, key: KeyPress): Intent {
  if (state.confirm !== null) {
    if (input === 'y' || input === 'Y') {
      return {kind: 'confirmed', action: state.confirm.action, workerId: state.confirm.workerId};
    }
    // Anything but y is a no: a stray key never stops a worker.
    return view({type: 'answer'});
  }
  if (state.editingFilter) {
    if (key.escape === true) {
      return view({type: 'filter-end', keep: false});
    }
    if (key.return === true || key.upArrow === true || key.downArrow === true) {
      return view({type: 'filter-end', keep: true});
    }
    if (key.backspace === true || key.delete === true) {
      return view({type: 'filter-backspace'});
    }
    if (input !== '' && key.ctrl !== true && key.meta !== true && key.tab !== true) {
      return view({type: 'filter-input', text: input.replace(/[\r\n]/g, '')});
    }
    return none;
  }
  if (key.upArrow === true || input === 'k') {
    return view({type: 'move', delta: -1});
  }
  if (key.downArrow === true || input === 'j') {
    return view({type: 'move', delta: 1});
  }
  if (key.pageUp === true) {
    return view({type: 'move', delta: -10});
  }
  if (key.pageDown === true) {
    return view({type: 'move', delta: 10});
  }
  if (key.escape === true) {
    if (state.showHelp) {
      return view({type: 'toggle', pane: 'help'});
    }
    return state.filter === '' ? none : view({type: 'filter-end', keep: false});
  }
  switch (input) {
    case 'q':
      return {kind: 'quit'};
    case 's':
      return {kind: 'ask', action: 'stop'};
    case 'r':
      return {kind: 'ask', action: 'restart'};
    case 'l':
      return view({type: 'toggle', pane: 'logs'});
    case '/':
      return view({type: 'filter-start'});
    case '?':
      return view({type: 'toggle', pane: 'help'});
    case 'a':
      return view({type: 'toggle', pane: 'history'});
    case 'o':
      return view({type: 'sort'});
    default:
      return none;
  }
}

export const keyHelp: ReadonlyArray<readonly [string, string]> = [
  ['↑/↓, j/k', 'select a worker (PgUp/PgDn: 10 at a time)'],
  ['s', 'stop the selected worker (asks y/n)'],
  ['r', 'restart it: stop, then spawn the same model, device and type (asks y/n)'],
  ['l', 'show or hide its recent log lines'],
  ['/', 'filter by id, model, type, state or device (enter keeps it, esc clears)'],
  ['a', 'show or hide workers that had already ended when the dashboard started'],
  ['o', `sort by the next key: ${sortKeys.join(', ')} (live workers first)`],
  ['?', 'this help (esc closes)'],
  ['q, Ctrl-C', 'quit (workers keep running)'],
];
