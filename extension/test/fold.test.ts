import { parseFrames } from '../src/client';
import { RunState } from '../src/fold';
import { fromSnapshot } from '../src/snapshot';

const events = [
  { id: '1-0', type: 'run.queued', ts: 1, workflow: 'blog' },
  { id: '2-0', type: 'run.started', ts: 2 },
  { id: '3-0', type: 'span.started', ts: 2, span_id: 'w', parent_id: null, name: 'blog', kind: 'workflow' },
  { id: '4-0', type: 'progress', ts: 2, step: 'outline' },
  { id: '5-0', type: 'span.started', ts: 3, span_id: 'a', parent_id: 'w', name: 'llm', kind: 'llm' },
  {
    id: '6-0', type: 'span.finished', ts: 4, span_id: 'a', status: 'ok',
    attrs: { 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 5, 'nbflow.cost_usd': 0.01 }
  },
  { id: '7-0', type: 'output', ts: 4, chunk: 'hello' },
  { id: '8-0', type: 'progress', ts: 4, step: 'draft' },
  { id: '9-0', type: 'run.failed', ts: 5, error: 'boom', error_type: 'ValueError' }
];

test('folds a run like nbflow/_fold.py: spans, usage, progress, output, terminal state', () => {
  const state = new RunState('r1');
  events.forEach(e => state.apply(e));
  expect(state.status).toBe('failed');
  expect(state.workflow).toBe('blog');
  expect(state.lastId).toBe('9-0');
  expect(state.usage()).toEqual({ input_tokens: 10, output_tokens: 5, total_tokens: 15, cost_usd: 0.01, llm_calls: 1 });
  expect(state.spans.get('a')!.depth).toBe(1);
  expect(state.spans.get('a')!.duration_ms).toBe(1000);
  expect(state.spans.get('w')!.status).toBe('error'); // still running when the run failed
  expect(Array.from(state.steps.values(), st => [st.name, st.state])).toEqual([['outline', 'done'], ['draft', 'failed']]);
  expect(state.emitted).toBe('hello');
});

test('rows are in tree order and skip collapsed subtrees', () => {
  const state = new RunState('r1');
  events.forEach(e => state.apply(e));
  expect(state.rows(new Set()).map(s => s.span_id)).toEqual(['w', 'a']);
  expect(state.rows(new Set(['w'])).map(s => s.span_id)).toEqual(['w']);
});

test('parses SSE frames, taking ids from id: lines', () => {
  const text = 'id: 1-0\nevent: run.queued\ndata: {"type":"run.queued","ts":1}\n\n: keep-alive\n\nid: 2-0\ndata: {"type":"output","chunk":"x"}';
  expect(parseFrames(text)).toEqual([
    { type: 'run.queued', ts: 1, id: '1-0' },
    { type: 'output', chunk: 'x', id: '2-0' }
  ]);
});

test('a snapshot draws at once: status, spans and usage from the notebook output', () => {
  const state = fromSnapshot({
    version: 1, run_id: 'r2', workflow: 'blog', status: 'running', mode: 'runtime', last_event_id: '5-0',
    snapshot: {
      status: 'running', progress: { outline: 'running' }, emitted_tail: 'hi', error: null,
      spans: [{ span_id: 'w', parent_id: null, name: 'blog', kind: 'workflow', status: 'running', duration_ms: null }],
      usage: { total_tokens: 42 }
    }
  });
  expect(state.status).toBe('running');
  expect(state.spans.size).toBe(1);
  expect(state.usage().total_tokens).toBe(42);
});
