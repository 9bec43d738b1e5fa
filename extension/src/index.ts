// The JupyterLab plugin: a runs panel in the right side bar, and each run's
// trace in a main-area tab. Both read the server extension, never a kernel.
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { RunsClient } from './client';
import { RunState } from './fold';
import { jupyterClient } from './jupyter';
import { RunsView } from './runs';
import { TraceView } from './trace';

const OPEN_RUN = 'nbflow:open-run';

class TraceWidget extends Widget {
  readonly view: TraceView;

  constructor(runId: string, client: RunsClient, openRun: (runId: string) => void) {
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
  const open = new Map<string, MainAreaWidget<TraceWidget>>();
  app.commands.addCommand(OPEN_RUN, {
    label: 'Open nbflow run',
    execute: args => {
      const runId = String(args.runId);
      let widget = open.get(runId);
      if (!widget || widget.isDisposed) {
        const openChild = (child: string) => void app.commands.execute(OPEN_RUN, { runId: child });
        widget = new MainAreaWidget({ content: new TraceWidget(runId, client, openChild) });
        widget.id = `nbflow-run-${runId}`;
        widget.title.label = `run ${runId.slice(0, 8)}`;
        widget.title.closable = true;
        open.set(runId, widget);
        app.shell.add(widget, 'main');
      }
      app.shell.activateById(widget.id);
    }
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
