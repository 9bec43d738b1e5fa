import { NOTEBOOK_CHARS, shortPath } from '../src/runs';

test('a short notebook path is shown whole', () => {
  expect(shortPath('notebooks/quickstart.ipynb')).toBe('notebooks/quickstart.ipynb');
  expect(shortPath('a'.repeat(NOTEBOOK_CHARS))).toBe('a'.repeat(NOTEBOOK_CHARS));
});

test('a long path keeps its file name and folders from both ends, cut in the middle', () => {
  const path = 'home/someone/projects/research/2026/agents/experiments/blog_post_agent.ipynb';
  const short = shortPath(path);
  expect(short.length).toBeLessThanOrEqual(NOTEBOOK_CHARS);
  expect(short).toBe('home/…/blog_post_agent.ipynb'); // with its nearest folder it is 40 chars
  expect(shortPath(path, 48)).toBe('home/…/agents/experiments/blog_post_agent.ipynb');
  expect(shortPath('x/'.repeat(40) + 'a.ipynb', 20)).toBe('x/…/x/x/x/x/a.ipynb');
  expect(shortPath('a_long_folder_name/another_long_folder/blog_post_agent.ipynb', 26)).toBe(
    '…/blog_post_agent.ipynb'
  );
});

test('a file name longer than the room keeps its end', () => {
  const name = 'a_very_long_notebook_name_that_goes_on_and_on_forever.ipynb';
  const short = shortPath(`work/${name}`);
  expect(short).toBe('…' + name.slice(name.length - (NOTEBOOK_CHARS - 1)));
  expect(short.length).toBe(NOTEBOOK_CHARS);
});
