// The notebook output a kernel leaves behind (application/vnd.nbflow.run+json):
// enough to draw the run at once, before (or without) reconnecting to its log.
import { Child, RunState, Usage, emptySpend } from './fold';
import { Wait } from './waits';

export const MIME_TYPE = 'application/vnd.nbflow.run+json';

export interface SnapshotSpan {
  span_id: string;
  parent_id: string | null;
  name: string;
  kind: string;
  status: string;
  duration_ms: number | null;
  attempts?: number;
  cached?: boolean;
  tokens?: number;
}

export interface RunOutput {
  version: number;
  run_id: string;
  workflow: string;
  status: string;
  mode: 'runtime' | 'local';
  last_event_id: string;
  view?: string; // the kernel's name for this output, while it follows the run
  snapshot: {
    status: string;
    progress: Record<string, string>;
    spans: SnapshotSpan[];
    usage: Partial<Usage>;
    emitted_tail?: string;
    output_tail?: string; // the name of emitted_tail in notebooks saved before 0.2
    error: string | null;
    wait?: Wait | null; // what a waiting run waited for when the output was left
    children?: Child[];
  };
}

export function fromSnapshot(data: RunOutput): RunState {
  const state = new RunState(data.run_id);
  const snap = data.snapshot ?? ({} as RunOutput['snapshot']);
  state.workflow = data.workflow ?? '';
  state.status = snap.status ?? data.status ?? 'queued';
  state.error = snap.error ?? null;
  state.emitted = snap.emitted_tail ?? snap.output_tail ?? '';
  state.wait = snap.wait ?? null;
  for (const child of snap.children ?? []) {
    state.children.set(child.child_id, { ...child });
  }
  for (const [name, value] of Object.entries(snap.progress ?? {})) {
    state.steps.set(name, { name, state: String(value), detail: null, start: null, end: null, duration_ms: null });
  }
  for (const s of snap.spans ?? []) {
    state.addSpan({
      span_id: s.span_id,
      parent_id: s.parent_id,
      name: s.name,
      kind: s.kind,
      step: '',
      status: s.status,
      start: null,
      end: null,
      duration_ms: s.duration_ms,
      depth: 0,
      attempts: s.attempts ?? 1,
      restarts: 0,
      cached: Boolean(s.cached),
      cache_key: null,
      input: null,
      output: null,
      error: null,
      error_type: null,
      traceback: null,
      retries: [],
      attrs: {},
      model: null,
      input_tokens: 0,
      output_tokens: 0,
      tokens: s.tokens ?? 0,
      cost_usd: 0,
      rollup: { ...emptySpend(), tokens: s.tokens ?? 0 },
      children: []
    });
  }
  const usage = snap.usage ?? {};
  state.setSnapshotUsage({
    input_tokens: usage.input_tokens ?? 0,
    output_tokens: usage.output_tokens ?? 0,
    total_tokens: usage.total_tokens ?? 0,
    cost_usd: usage.cost_usd ?? 0,
    llm_calls: usage.llm_calls ?? 0
  });
  return state;
}
