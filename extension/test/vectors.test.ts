/// <reference types="node" />
import { readdirSync, readFileSync } from 'fs';
import { join } from 'path';

import { RunState } from '../src/fold';

// The fold's specification, which tests/test_fold_vectors.py holds the Python fold to:
// every tests/vectors/fold_*.json case, compared through RunState.toDict().
const dir = join(__dirname, '../../tests/vectors');
const files = readdirSync(dir).filter(name => /^fold_.*\.json$/.test(name)).sort();
const cases: [string, string, any][] = files.flatMap(file =>
  JSON.parse(readFileSync(join(dir, file), 'utf8')).cases.map((c: any) => [file, c.name, c])
);
const fields = JSON.parse(readFileSync(join(dir, 'state_fields.json'), 'utf8'));

function fold(events: any[]): RunState {
  const state = new RunState('');
  events.forEach(e => state.apply(e));
  return state;
}

/** The state's values for the keys `expected` names (spans: the fields it names). */
function observed(state: Record<string, any>, expected: Record<string, any>): Record<string, any> {
  const got: Record<string, any> = {};
  for (const key of Object.keys(expected)) {
    if (key !== 'spans') {
      got[key] = state[key];
    }
  }
  if (expected.spans) {
    got.spans = {};
    for (const span of state.spans) {
      const want = expected.spans[span.span_id] ?? {};
      got.spans[span.span_id] = Object.fromEntries(Object.keys(want).map(f => [f, span[f]]));
    }
  }
  return got;
}

test('the vectors are there', () => {
  expect(files).toEqual(expect.arrayContaining(['fold_spans.json', 'fold_state.json', 'fold_waits.json']));
});

describe.each(cases)('%s: %s', (file: string, _name: string, c: any) => {
  test('the TypeScript fold reaches the expected state', () => {
    const state = fold(c.events);
    const got = observed(state.toDict(), c.expected);
    for (const key of Object.keys(c.expected)) {
      expect([key, got[key]]).toEqual([key, c.expected[key]]);
    }
    if (c.expected.spans) {
      // every span, in the order the fold keeps them
      expect(Object.keys(got.spans)).toEqual(Object.keys(c.expected.spans));
    }
    if (file === 'fold_state.json') {
      expect(state.publishErrors.size).toBe(0);
    }
  });

  test('folding leaves the events as they were (the state shares no objects with them)', () => {
    const events = JSON.parse(JSON.stringify(c.events));
    const state = fold(events);
    state.toDict();
    expect(events).toEqual(c.events);
  });
});

test('the state, its spans and steps have the fields both folds write', () => {
  const state = fold(cases.flatMap(([, , c]) => c.events)).toDict() as Record<string, any>;
  expect(Object.keys(state).sort()).toEqual([...fields.state].sort());
  expect(Object.keys(state.usage).sort()).toEqual([...fields.usage].sort());
  expect(state.spans.length).toBeGreaterThan(0);
  expect(state.steps.length).toBeGreaterThan(0);
  for (const span of state.spans) {
    expect(Object.keys(span).sort()).toEqual([...fields.span].sort());
    expect(Object.keys(span.rollup).sort()).toEqual([...fields.rollup].sort());
  }
  for (const step of state.steps) {
    expect(Object.keys(step).sort()).toEqual([...fields.step].sort());
  }
});
