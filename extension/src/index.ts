// The JupyterLab plugin: a runs panel in the right side bar, and each run's
// trace in a main-area tab (restored with the layout after a reload). Both read
// the server extension, never a kernel. Notebook 7's main area holds only its
// document: there a run opens in a browser tab of its own, the server
// extension's viewer page.
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { MainAreaWidget, WidgetTracker } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import { RunsClient } from './client';
import { RunState } from './fold';
import { jupyterClient } from './jupyter';
import { RunsView } from './runs';
import { TraceView } from './trace';

const OPEN_RUN = 'nbflow:open-run';
const NOTEBOOK_7 = 'Jupyter Notebook'; // its app's name

/** The server extension's viewer page, showing one run. */
export function runPageUrl(runId: string, baseUrl = PageConfig.getBaseUrl()): string {
  return `${URLExt.join(baseUrl, 'nbflow/api/ui')}#run=${encodeURIComponent(runId)}`;
}

class TraceWidget extends Widget {
  readonly view: TraceView;

  constructor(readonly runId: string, client: RunsClient, openRun: (runId: string) => void) {
    super();
    this.addClass('nbflow-trace-widget');
    this.view = new TraceView(new RunState(runId), client, { openRun });
    this.node.appendChild(this.view.node);
    this.view.connect();
  }

  dispose(): void {
    this.view.dispose();
    super.dispose();
  }
}

class RunsPanel extends Widget {
  constructor(readonly runs: RunsView) {
    super();
    this.id = 'nbflow-runs';
    this.addClass('nbflow-runs-panel');
    this.title.caption = 'nbflow runs';
    this.title.label = 'Runs';
    this.node.appendChild(runs.node);
  }

  protected onAfterShow(): void {
    this.runs.start();
  }

  protected onAfterAttach(): void {
    if (this.isVisible) {
      this.runs.start(); // restored open with the layout
    }
  }

  protected onAfterHide(): void {
    this.runs.stop();
  }
}

function activate(app: JupyterFrontEnd, restorer: ILayoutRestorer | null): void {
  const client = jupyterClient();
  const tracker = new WidgetTracker<MainAreaWidget<TraceWidget>>({ namespace: 'nbflow-run' });
  app.commands.addCommand(OPEN_RUN, {
    label: args => (args.runId ? `Open nbflow run ${args.runId}` : 'Open nbflow run'),
    execute: args => {
      const runId = String(args.runId);
      if (app.name === NOTEBOOK_7) {
        window.open(runPageUrl(runId), '_blank');
        return;
      }
      let widget = tracker.find(w => w.content.runId === runId);
      if (!widget) {
        const openChild = (child: string) => void app.commands.execute(OPEN_RUN, { runId: child });
        widget = new MainAreaWidget({ content: new TraceWidget(runId, client, openChild) });
        widget.id = `nbflow-run-${runId}`;
        widget.title.label = `run ${runId.slice(0, 8)}`;
        widget.title.caption = `nbflow run ${runId}`;
        widget.title.closable = true;
        void tracker.add(widget);
        app.shell.add(widget, 'main');
      }
      app.shell.activateById(widget.id);
    }
  });
  void restorer?.restore(tracker, {
    command: OPEN_RUN,
    args: widget => ({ runId: widget.content.runId }),
    name: widget => widget.content.runId
  });
  const runs = new RunsView(client, run => void app.commands.execute(OPEN_RUN, { runId: run.run_id }));
  const panel = new RunsPanel(runs);
  app.shell.add(panel, 'right', { rank: 900 });
  restorer?.add(panel, panel.id);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbflow:runs-panel',
  description: 'nbflow runs panel and run traces',
  autoStart: true,
  optional: [ILayoutRestorer],
  activate
};

export default plugin;
