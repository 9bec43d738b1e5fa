// The server extension's routes (/nbflow/api/...) through Jupyter's own
// connection settings: base URL, token and XSRF header, as every Lab request.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { RunsClient } from './client';

export function jupyterClient(settings: ServerConnection.ISettings = ServerConnection.makeSettings()): RunsClient {
  return new RunsClient((path, init) =>
    ServerConnection.makeRequest(URLExt.join(settings.baseUrl, 'nbflow/api', path), init ?? {}, settings)
  );
}
