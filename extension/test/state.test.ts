import { RunState } from '../src/fold';
import { applyStatePatch, pyJson } from '../src/state';

test('a state.patch bumps publishedVersion, so a view knows to redraw', () => {
  const state = new RunState('r');
  state.apply({ type: 'state.patch', name: 'plan', patch: [{ op: 'replace', path: '', value: { a: 1 } }] });
  state.apply({ type: 'state.patch', name: 'plan', patch: [{ op: 'add', path: '/b', value: 2 }] });
  expect(state.publishedVersion).toBe(2);
  expect(state.published.get('plan')).toEqual({ a: 1, b: 2 });
});

test('a patch that does not apply keeps the last good value and says why, by name', () => {
  const state = new RunState('r');
  state.apply({ type: 'state.patch', name: 'plan', patch: [{ op: 'replace', path: '', value: { title: 'x', n: 1 } }] });
  // the first op would apply; the whole patch is refused, not half of it
  state.apply({
    type: 'state.patch', name: 'plan',
    patch: [{ op: 'append', path: '/title', value: 'y' }, { op: 'append', path: '/n', value: 'z' }]
  });
  expect(state.published.get('plan')).toEqual({ title: 'x', n: 1 });
  expect(state.publishErrors.get('plan')).toBe('op 1 (append "/n"): appends to a string, found number');
  state.apply({ type: 'state.patch', name: 'plan', patch: [{ op: 'remove', path: '/missing' }] });
  expect(state.publishErrors.get('plan')).toMatch(/^op 0 \(remove "\/missing"\): /);
  state.apply({ type: 'state.patch', name: 'plan', patch: [{ op: 'append', path: '/title', value: '!' }] });
  expect(state.published.get('plan')).toEqual({ title: 'x!', n: 1 });
  expect(state.publishErrors.has('plan')).toBe(false);
});

test('applyStatePatch returns a new value and leaves its input alone', () => {
  const doc = { list: ['a'], text: 'he' };
  const out = applyStatePatch(doc, [
    { op: 'add', path: '/list/-', value: 'b' },
    { op: 'append', path: '/text', value: 'llo' }
  ]);
  expect(out).toEqual({ list: ['a', 'b'], text: 'hello' });
  expect(doc).toEqual({ list: ['a'], text: 'he' });
  expect(() => applyStatePatch(doc, [{ op: 'append', path: '/nope', value: 'x' }])).toThrow('op 0 (append "/nope"): no string at this path');
  expect(() => applyStatePatch(doc, [{ op: 'append', path: '/text', value: 3 }])).toThrow('an append adds a string');
});

test("pyJson writes what Python's json.dumps writes", () => {
  expect(pyJson({ a: [1, 2.5, null], b: { c: true } })).toBe('{"a": [1, 2.5, null], "b": {"c": true}}');
  expect(pyJson('é\u0001\u007f😀/')).toBe('"\\u00e9\\u0001\\u007f\\ud83d\\ude00/"');
  expect(pyJson([0.0001, 0.00001, 1e16, 123.0, -1.5e-7, 1e300])).toBe('[0.0001, 1e-05, 1e+16, 123, -1.5e-07, 1e+300]');
  expect(pyJson([[], {}])).toBe('[[], {}]');
});
