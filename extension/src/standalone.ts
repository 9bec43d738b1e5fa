// /ui of `nbflow api`: the runs list and a run's trace, on the REST API's /runs
// routes. A bearer token (when the API has one) comes from #token=... once and
// is kept in this browser's local storage. The Jupyter server extension serves
// the same page at /nbflow/api/ui, where the login cookie and the XSRF header
// (Jupyter's, for POSTs) authenticate instead.
import { RunsClient } from './client';
import { RunState } from './fold';
import { RunsView } from './runs';
import { TraceView } from './trace';

const TOKEN_KEY = 'nbflow-api-token';

function hashParams(): URLSearchParams {
  return new URLSearchParams(location.hash.replace(/^#/, ''));
}

function client(): RunsClient {
  const given = hashParams().get('token');
  if (given) {
    localStorage.setItem(TOKEN_KEY, given);
  }
  const base = new URL('.', location.href.replace(/#.*$/, '').replace(/\/?$/, '/')).href.replace(/ui\/$/, '');
  const send = (path: string, init: RequestInit) => {
    const token = localStorage.getItem(TOKEN_KEY);
    const headers = new Headers(init.headers);
    if (token) {
      headers.set('Authorization', `Bearer ${token}`);
    }
    const xsrf = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    if (xsrf) {
      headers.set('X-XSRFToken', decodeURIComponent(xsrf[1]));
    }
    return fetch(base + path, { ...init, headers });
  };
  return new RunsClient(async (path, init = {}) => {
    const response = await send(path, init);
    if (response.status !== 401) {
      return response;
    }
    localStorage.setItem(TOKEN_KEY, prompt('This nbflow API needs its token (NBFLOW_API_TOKEN):') ?? '');
    return send(path, init);
  });
}

function main(): void {
  const api = client();
  const root = document.getElementById('nbflow-ui')!;
  const detail = document.createElement('div');
  detail.className = 'nbflow-ui-detail';
  let trace: TraceView | null = null;
  const show = (runId: string) => {
    trace?.dispose();
    trace = new TraceView(new RunState(runId), api, { openRun: show });
    detail.replaceChildren(trace.node);
    trace.connect();
    history.replaceState(null, '', `#run=${runId}`);
  };
  const runs = new RunsView(api, run => show(run.run_id));
  runs.node.classList.add('nbflow-ui-list');
  root.replaceChildren(runs.node, detail);
  runs.start();
  const wanted = hashParams().get('run');
  if (wanted) {
    show(wanted);
  }
}

main();
