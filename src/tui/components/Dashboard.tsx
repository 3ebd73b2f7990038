/**
 * `rbee dashboard`: header, live worker table, detail (or help) pane and a key line, sized to the
 * terminal. Reads the hive only through `api` (its event stream and HTTP API).
 */
import {Box, useApp, useInput, useStdout} from 'ink';
import {useEffect, useMemo, useReducer, useRef} from 'react';
import {hiveUrl} from '../../config/env.js';
import type {AutoscaleEvent, DeviceInfo, WorkerInfo} from '../../protocol/wire.js';
import {layoutColumns, typeColumnWidth} from '../columns.js';
import {groupRestartRequest, restartRequest, type DashboardApi} from '../dashboard-api.js';
import {isAliveState, type HiveModel} from '../model.js';
import {selectableIds, tableLines, type TableLine} from '../rows.js';
import {initialView, keyIntent, reduceView, type KeyPress, type ViewAction, type ViewState, type WorkerAction} from '../view-state.js';
import {useHiveModel, type HiveModelOptions} from '../hooks/useHiveModel.js';
import {useTerminalSize} from '../hooks/useTerminalSize.js';
import {useWorkerLog} from '../hooks/useWorkerLog.js';
import {describedLines, DetailPane, detailPaneHeight} from './DetailPane.js';
import {Footer} from './Footer.js';
import {Header, headerHeight} from './Header.js';
import {HelpPane, helpPaneHeight} from './HelpPane.js';
import {ColorsContext} from './Line.js';
import {WorkerTable} from './WorkerTable.js';

export type DashboardProps = {
  api: DashboardApi;
  /** Colour the lines; by default, when the terminal has colours and NO_COLOR is not set. */
  colors?: boolean;
  options?: HiveModelOptions & {logLines?: number};
};

function emptyText(model: HiveModel, view: ViewState): string {
  const {connection} = model;
  if (model.workers.size === 0 && connection.phase === 'connecting') {
    return `connecting to ${model.url}…`;
  }
  if (model.workers.size === 0 && connection.phase === 'reconnecting') {
    return `no answer from the hive yet (${connection.error})`;
  }
  if (view.filter !== '') {
    return `no worker matches "${view.filter}" (esc clears the filter)`;
  }
  const hint = `rbee worker spawn --model default --wait${model.url === hiveUrl({}) ? '' : ` --hive ${model.url}`}`;
  const ended = [...model.workers.values()].filter(row => row.history).length;
  return ended > 0 ? `No running workers (${ended} ended before: a shows them). Spawn one: ${hint}` : `No workers on this hive yet. Spawn one: ${hint}`;
}

/** Chart lines at most, under the sentences: more says nothing more. */
const maxChartLines = 20;

type PaneNeeds = {help: boolean; detail: {sentences: number; chart: boolean} | null; logs: boolean; logLines: number};

/**
 * Line heights for a terminal of `rows` lines. The table gets the lines it has (at least 3) and the
 * detail pane what is left: its sentences, the log lines asked for, then a throughput chart, so a
 * hive of two workers does not leave most of the screen blank.
 */
function layoutHeights(rows: number, tableLineCount: number, panes: PaneNeeds) {
  // One line short of the screen: ink clears the whole terminal on every frame when its output fills it.
  const available = Math.max(8, rows - 1);
  const space = available - headerHeight - 1 - 1; // header, table header, footer
  if (panes.help) {
    const showPane = space - helpPaneHeight >= 3;
    return {body: space - (showPane ? helpPaneHeight : 0), fieldLines: 0, logLines: 0, showPane};
  }
  if (panes.detail === null) {
    return {body: space, fieldLines: 0, logLines: 0, showPane: false};
  }
  let fieldLines = Math.max(1, panes.detail.sentences);
  let logLines = panes.logs ? panes.logLines : 0;
  while (space - detailPaneHeight(fieldLines, logLines) < 3 && (logLines > 1 || fieldLines > 1)) {
    if (logLines > 1) {
      logLines--;
    } else {
      fieldLines--;
    }
  }
  if (space - detailPaneHeight(fieldLines, logLines) < 3) {
    return {body: space, fieldLines, logLines, showPane: false};
  }
  const body = Math.max(3, Math.min(tableLineCount, space - detailPaneHeight(fieldLines, logLines)));
  const spare = space - body - detailPaneHeight(fieldLines, logLines);
  if (panes.detail.chart && spare >= 4) {
    fieldLines += Math.min(spare, maxChartLines + 1);
  }
  return {body: space - detailPaneHeight(fieldLines, logLines), fieldLines, logLines, showPane: true};
}

/** Whether the terminal shows colours: ink's stdout says, and NO_COLOR or FORCE_COLOR=0 turn them off. */
function terminalHasColors(stdout: NodeJS.WriteStream): boolean {
  if ((process.env.NO_COLOR ?? '') !== '' || process.env.FORCE_COLOR === '0') {
    return false;
  }
  return stdout.isTTY === true && typeof stdout.hasColors === 'function' && stdout.hasColors();
}

/** The event line shows a models-on-demand decision for half a minute. */
const decisionShownMs = 30_000;

function latestDecision(model: HiveModel): AutoscaleEvent | null {
  const last = model.autoscale.at(-1);
  return last !== undefined && model.now - Date.parse(last.at) < decisionShownMs ? last : null;
}

export function Dashboard({api, colors, options = {}}: DashboardProps) {
  const {exit} = useApp();
  const {stdout} = useStdout();
  const colored = useMemo(() => colors ?? terminalHasColors(stdout), [colors, stdout]);
  const {columns, rows} = useTerminalSize();
  const model = useHiveModel(api, options);
  const [view, dispatchView] = useReducer(reduceView, initialView);

  // Rates move with time, so only the tok/s order is redone on a clock tick.
  const sortNow = view.sort === 'tok/s' ? model.now : 0;
  const lines: TableLine[] = useMemo(
    () =>
      tableLines(model.workers.values(), {
        filter: view.filter,
        showHistory: view.showHistory,
        groups: model.groups,
        sort: view.sort,
        now: sortNow || model.now,
        links: view.links,
      }),
    [model.workers, model.groups, view.filter, view.showHistory, view.sort, view.links, sortNow],
  );
  const ids = useMemo(() => selectableIds(lines), [lines]);
  const selectedId = view.selectedId !== null && ids.includes(view.selectedId) ? view.selectedId : (ids[0] ?? null);
  const selected = selectedId === null ? null : (model.workers.get(selectedId) ?? null);
  // Shown while any workflow worker lives (its heartbeat carries current_workflow, null when idle), so the column does not come and go with each workflow.
  const workflow = useMemo(
    () =>
      [...model.workers.values()].some(
        row => row.info.last_heartbeat?.workflow_progress != null || (row.info.last_heartbeat?.current_workflow !== undefined && !row.history),
      ),
    [model.workers],
  );
  const typeWidth = useMemo(() => typeColumnWidth(Array.from(model.workers.values(), row => row.info.type)), [model.workers]);
  const tableColumns = useMemo(() => layoutColumns(columns, {workflow, typeWidth}), [columns, workflow, typeWidth]);
  const devices = useMemo(() => new Map<string, DeviceInfo>(model.devices.map(device => [device.id, device])), [model.devices]);
  const restartedFrom = selectedId === null ? undefined : view.links.get(selectedId);
  const selectedGroupId = selected?.info.group_id ?? selected?.info.last_heartbeat?.group_id;
  const selectedGroup = selectedGroupId === undefined || selectedGroupId === null ? undefined : model.groups.get(selectedGroupId);
  const deviceMemory = selected === null ? undefined : devices.get(selected.info.device)?.memory_total;
  const decision = selected === null ? undefined : [...model.autoscale].reverse().find(event => event.worker_id === selected.info.worker_id);
  const detailContext = {now: model.now, deviceMemory, group: selectedGroup, restartedFrom, decision};
  const detail = selected === null ? null : {sentences: describedLines(selected, detailContext), chart: selected.throughput.length > 1};
  const panes = {help: view.showHelp, detail, logs: view.showLogs};
  const room = layoutHeights(rows, lines.length, {...panes, logLines: options.logLines ?? 8});
  const log = useWorkerLog(api, selectedId, view.showLogs && room.showPane && !view.showHelp, room.logLines);
  // A short log leaves its room to the table.
  const heights = layoutHeights(rows, lines.length, {...panes, logLines: Math.min(room.logLines, Math.max(1, log?.lines.length ?? 1))});

  // The window of lines shown follows the selection, moving only when it would leave the window.
  const offset = useRef(0);
  const selectedLine = selectedId === null ? 0 : lines.findIndex(line => line.kind === 'worker' && line.row.info.worker_id === selectedId);
  if (selectedLine < offset.current) {
    // Keep a group's title line in view with its first member.
    offset.current = Math.max(0, selectedLine > 0 && lines[selectedLine - 1]?.kind === 'group' ? selectedLine - 1 : selectedLine);
  } else if (selectedLine >= offset.current + heights.body) {
    offset.current = selectedLine - heights.body + 1;
  }
  offset.current = Math.max(0, Math.min(offset.current, lines.length - heights.body));

  // The latest model for async work started from a key press.
  const latest = useRef(model);
  latest.current = model;

  // Keys read the state of the last render plus what they changed since, not the closure's: ink
  // re-registers this handler in an effect, and a paste delivers several keys before any render.
  const current = useRef({view, ids});
  current.current = {view, ids};
  const update = (action: ViewAction) => {
    current.current = {...current.current, view: reduceView(current.current.view, action)};
    dispatchView(action);
  };

  const perform = async (action: WorkerAction, workerId: string) => {
    const worker: WorkerInfo | undefined = latest.current.workers.get(workerId)?.info;
    if (worker === undefined) {
      return;
    }
    const group = worker.group_id === null ? undefined : latest.current.groups.get(worker.group_id);
    update({type: 'started', action, workerId});
    update({
      type: 'notice',
      notice: {text: `${action === 'stop' ? 'stopping' : 'restarting'} ${group === undefined ? workerId : `group ${group.group_id}`}…`, tone: 'info'},
    });
    try {
      if (group !== undefined) {
        // A member serves only with its group: the group is stopped, or spawned again, whole.
        // Always asked, even of a failed group: one waiting to restart would otherwise come back on its own.
        const stopped = await api.stopGroup(group.group_id);
        if (action === 'stop') {
          update({type: 'finished', workerId, notice: {text: `group ${group.group_id} ${stopped.health}`, tone: 'success'}});
          return;
        }
        const spawned = await api.spawnGroup(groupRestartRequest(group, latest.current.workers.get(group.coordinator.worker_id)?.info));
        update({type: 'finished', workerId, notice: {text: `restarted group ${group.group_id} as ${spawned.group_id}`, tone: 'success'}});
        update({type: 'select', id: spawned.coordinator.worker_id});
        return;
      }
      if (action === 'stop') {
        const info = await api.stopWorker(workerId);
        update({type: 'finished', workerId, notice: {text: `${workerId} ${info.state}`, tone: 'success'}});
        return;
      }
      if (isAliveState(worker.state)) {
        await api.stopWorker(workerId);
      }
      const spawned = await api.spawnWorker(restartRequest(worker));
      update({type: 'finished', workerId, notice: {text: `restarted ${workerId} as ${spawned.worker_id}`, tone: 'success'}});
      // The new worker takes the old one's row, marked ↻, and the pane says where it came from.
      update({type: 'link', from: workerId, to: spawned.worker_id});
      update({type: 'select', id: spawned.worker_id});
    } catch (error) {
      update({type: 'finished', workerId, notice: {text: `${action} ${workerId} failed: ${(error as Error).message}`, tone: 'error'}});
    }
  };

  const handleKey = (input: string, key: KeyPress) => {
    const {view, ids} = current.current;
    const intent = keyIntent(view, input, key);
    switch (intent.kind) {
      case 'none':
        return;
      case 'quit':
        exit();
        return;
      case 'view': {
        const action: ViewAction = intent.action.type === 'move' ? {type: 'move', delta: intent.action.delta, ids} : (intent.action as ViewAction);
        update(action);
        if (view.notice !== null && action.type !== 'move') {
          update({type: 'notice', notice: null});
        }
        return;
      }
      case 'ask': {
        // The selection as the keys before this one left it.
        const id = view.selectedId !== null && ids.includes(view.selectedId) ? view.selectedId : ids[0];
        const selected = id === undefined ? undefined : latest.current.workers.get(id);
        if (selected === undefined) {
          update({type: 'notice', notice: {text: 'no worker selected', tone: 'error'}});
        } else if (view.pending[selected.info.worker_id] !== undefined) {
          update({
            type: 'notice',
            notice: {text: `${selected.info.worker_id}: a ${view.pending[selected.info.worker_id]} is already under way`, tone: 'error'},
          });
        } else if (intent.action === 'stop' && !isAliveState(selected.info.state)) {
          update({type: 'notice', notice: {text: `${selected.info.worker_id} is already ${selected.info.state}`, tone: 'error'}});
        } else {
          update({type: 'ask', action: intent.action, workerId: selected.info.worker_id});
        }
        return;
      }
      case 'confirmed':
        update({type: 'answer'});
        void perform(intent.action, intent.workerId);
    }
  };

  useInput((input, key) => {
    // Keys typed faster than the dashboard reads them arrive together, as one string (as a paste
    // does): outside the filter, each character is its own key.
    if (!current.current.view.editingFilter && input.length > 1 && key.ctrl !== true && key.meta !== true) {
      for (const char of input) {
        handleKey(char, {});
      }
      return;
    }
    handleKey(input, key);
  });

  // A notice fades after 8 s, unless a newer one replaced it.
  useEffect(() => {
    if (view.notice === null || Object.keys(view.pending).length > 0) {
      return;
    }
    const timer = setTimeout(() => dispatchView({type: 'notice', notice: null}), 8_000);
    return () => clearTimeout(timer);
  }, [view.notice, view.pending]);

  const muted = model.connection.phase !== 'live';
  const first = lines.length === 0 ? 0 : offset.current + 1;
  return (
    <ColorsContext.Provider value={colored}>
      <Box flexDirection="column" width={columns}>
        <Header model={model} width={columns} showing={{from: first, to: Math.min(lines.length, offset.current + heights.body), of: lines.length}} />
        <WorkerTable
          lines={lines}
          columns={tableColumns}
          width={columns}
          offset={offset.current}
          height={heights.body}
          selectedId={selectedId}
          context={{now: model.now, devices}}
          muted={muted}
          empty={emptyText(model, view)}
        />
        {!heights.showPane ? null : view.showHelp ? (
          <HelpPane width={columns} />
        ) : selected === null ? null : (
          <DetailPane
            row={selected}
            now={model.now}
            width={columns}
            fieldLines={heights.fieldLines}
            logLines={view.showLogs ? heights.logLines : 0}
            log={log}
            pending={view.pending[selected.info.worker_id]}
            deviceMemory={deviceMemory}
            group={selectedGroup}
            restartedFrom={restartedFrom}
            decision={decision}
          />
        )}
        <Footer
          view={view}
          width={columns}
          confirming={view.confirm === null ? null : (model.workers.get(view.confirm.workerId)?.info ?? null)}
          decision={latestDecision(model)}
        />
      </Box>
    </ColorsContext.Provider>
  );
}
