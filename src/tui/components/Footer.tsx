/** The bottom line: the y/n question, the filter being typed, or the last notice and the keys. */
import type {AutoscaleEvent, WorkerInfo} from '../../protocol/wire.js';
import type {Segment} from '../ansi.js';
import type {ViewState} from '../view-state.js';
import {decisionText} from '../decision-text.js';
import {Line} from './Line.js';

const hints = (sort: string) => `↑↓/jk select · s stop · r restart · l logs · / filter · o sort (${sort}) · a ended · ? help · q quit`;
const toneColor = {info: 'cyan', success: 'green', error: 'red'} as const;

export function Footer({view, confirming, width, decision}: {view: ViewState; confirming: WorkerInfo | null; width: number; decision: AutoscaleEvent | null}) {
  let segments: Segment[];
  if (view.confirm !== null) {
    const target = confirming === null ? view.confirm.workerId : `${confirming.worker_id} (${confirming.model} on ${confirming.device})`;
    const group = confirming?.group_id ?? null;
    const question =
      group !== null
        ? view.confirm.action === 'stop'
          ? `Stop ${target}? Its whole group ${group} stops with it.`
          : `Restart group ${group}: stop every member, then spawn the same model on the same devices?`
        : view.confirm.action === 'stop'
          ? `Stop ${target}?`
          : `Restart ${target}: stop it, then spawn the same model, device and type?`;
    segments = [{text: `${question} y/n`, color: 'yellow', bold: true}];
  } else if (view.editingFilter) {
    segments = [
      {text: `/${view.filter}█`, color: 'cyan'},
      {text: '   enter keeps the filter · esc clears it', color: 'gray'},
    ];
  } else {
    segments = [
      ...(view.filter === '' ? [] : [{text: `filter "${view.filter}" · `, color: 'cyan' as const}]),
      ...(view.notice === null ? [] : [{text: `${view.notice.text} · `, color: toneColor[view.notice.tone]}]),
      ...(decision === null
        ? []
        : [{text: `${decisionText(decision)} · `, color: decision.action === 'refused-for' ? ('red' as const) : ('magenta' as const)}]),
      {text: hints(view.sort), color: 'gray'},
    ];
  }
  return <Line width={width} segments={segments} />;
}
