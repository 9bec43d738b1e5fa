/// <reference types="node" />
import { readFileSync } from 'fs';
import { join } from 'path';

import { fromSnapshot } from '../src/snapshot';
import { describeWait, fieldKind, parseField } from '../src/waits';

test('a wait reads as one line, as nbflow/_waitinfo.py says it', () => {
  const now = new Date(2026, 0, 2, 12, 0, 0);
  const soon = new Date(2026, 0, 2, 13, 5, 9).getTime() / 1000;
  const later = new Date(2026, 0, 3, 8, 0, 0).getTime() / 1000;
  expect(describeWait({ kind: 'input', name: 'ok', prompt: 'Ship\n  it?' }, now)).toBe("input 'ok': Ship it?");
  expect(describeWait({ kind: 'input', name: 'ok', until: soon }, now)).toBe("input 'ok' (answer by 13:05:09)");
  expect(describeWait({ kind: 'sleep', until: later }, now)).toBe('timer until 2026-01-03 08:00:00');
  expect(describeWait({ kind: 'children', runs: ['a', 'b'] })).toBe('2 child runs');
  expect(describeWait({ kind: 'children', runs: ['a'] })).toBe('1 child run');
  expect(describeWait(null)).toBe('');
  const long = describeWait({ kind: 'input', name: 'x', prompt: 'y'.repeat(500) });
  expect(long.length).toBeLessThan(100);
  expect(long.endsWith('…')).toBe(true);
});

// The same cases as tests/test_waitinfo.py (the notebook widget's fields come from Python).
const fields: [any, string][] = JSON.parse(readFileSync(join(__dirname, '../../tests/vectors/wait_fields.json'), 'utf8')).cases;

test.each(fields)('the field follows the schema: %j gets %s', (schema, kind) => {
  expect(fieldKind(schema)).toBe(kind);
});

test("a field's text becomes the value it stands for, or says what is wrong", () => {
  expect(parseField('boolean', 'true', null)).toEqual({ ok: true, value: true });
  expect(parseField('boolean', 'false', null)).toEqual({ ok: true, value: false });
  expect(parseField('enum', '1', { enum: ['blog', 2, null] })).toEqual({ ok: true, value: 2 });
  expect(parseField('enum', '2', { enum: ['blog', 2, null] })).toEqual({ ok: true, value: null });
  expect(parseField('enum', '', { enum: ['blog'] })).toEqual({ ok: false, error: 'choose one of the options' });
  expect(parseField('integer', '3', null)).toEqual({ ok: true, value: 3 });
  expect(parseField('integer', '2.5', null)).toEqual({ ok: false, error: 'enter a whole number' });
  expect(parseField('number', '2.5', null)).toEqual({ ok: true, value: 2.5 });
  expect(parseField('number', '', null)).toEqual({ ok: false, error: 'enter a number' });
  expect(parseField('string', '', null)).toEqual({ ok: true, value: '' });
  expect(parseField('json', '{"n": 2}', null)).toEqual({ ok: true, value: { n: 2 } });
  const bad = parseField('json', '{n: 2}', null);
  expect(bad.ok).toBe(false);
  expect(!bad.ok && bad.error.startsWith('not JSON: ')).toBe(true);
});

test('a snapshot of a waiting parent draws its wait and its children at once', () => {
  const state = fromSnapshot({
    version: 1, run_id: 'p', workflow: 'fan_out', status: 'waiting', mode: 'runtime', last_event_id: '6-0',
    snapshot: {
      status: 'waiting', progress: {}, spans: [], usage: {}, output_tail: '', error: null,
      wait: { kind: 'children', runs: ['c1'] },
      children: [{ child_id: 'c1', workflow: 'research', status: 'running', total_tokens: 0, cost_usd: 0 }]
    }
  });
  expect(state.status).toBe('waiting');
  expect(state.wait).toEqual({ kind: 'children', runs: ['c1'] });
  expect(Array.from(state.children.keys())).toEqual(['c1']);
});
