/** The status bar item and the sessions view, redrawn from the store on every change. */
import * as vscode from "vscode";
import type { Daemon } from "./daemon";
import { sessionNodes, statusBarModel, type TreeNodeModel } from "./presentation";
import type { Sessions } from "./sessions";

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private readonly disposables: { dispose(): unknown }[] = [];

  constructor(
    private readonly daemon: Daemon,
    private readonly sessions: Sessions,
  ) {
    this.item = vscode.window.createStatusBarItem("podlink.status", vscode.StatusBarAlignment.Left, 50);
    this.item.name = "podlink";
    this.item.command = "podlink.showActions";
    this.disposables.push(
      this.item,
      daemon.onDidChangeStatus(() => this.render()),
      sessions.store.onDidChange(() => this.render()),
    );
    this.render();
    this.item.show();
  }

  private render(): void {
    const model = statusBarModel(this.daemon.status, this.sessions.store.all());
    this.item.text = model.text;
    const tooltip = new vscode.MarkdownString(model.tooltip, true);
    this.item.tooltip = tooltip;
    this.item.accessibilityInformation = { label: model.accessibilityLabel };
    this.item.backgroundColor =
      model.tone === "error"
        ? new vscode.ThemeColor("statusBarItem.errorBackground")
        : model.tone === "warning"
          ? new vscode.ThemeColor("statusBarItem.warningBackground")
          : undefined;
  }

  dispose(): void {
    for (const disposable of this.disposables) disposable.dispose();
  }
}

export class SessionsTree implements vscode.TreeDataProvider<TreeNodeModel>, vscode.Disposable {
  private readonly changeEmitter = new vscode.EventEmitter<TreeNodeModel | undefined>();
  readonly onDidChangeTreeData = this.changeEmitter.event;
  private readonly subscription: { dispose(): unknown };

  constructor(private readonly sessions: Sessions) {
    this.subscription = sessions.store.onDidChange(() => this.changeEmitter.fire(undefined));
  }

  getChildren(element?: TreeNodeModel): TreeNodeModel[] {
    return element ? (element.children ?? []) : sessionNodes(this.sessions.store.all());
  }

  getTreeItem(node: TreeNodeModel): vscode.TreeItem {
    const collapsible = node.children
      ? vscode.TreeItemCollapsibleState.Expanded
      : vscode.TreeItemCollapsibleState.None;
    const item = new vscode.TreeItem(node.label, collapsible);
    item.id = node.id;
    item.description = node.description;
    item.tooltip = node.tooltip;
    item.contextValue = node.kind;
    item.iconPath = new vscode.ThemeIcon(node.icon, node.iconColor ? new vscode.ThemeColor(node.iconColor) : undefined);
    if (node.kind === "port" && node.port) {
      item.command = { command: "podlink.openPort", title: "Open in Browser", arguments: [node] };
    } else if ((node.kind === "conflict" || node.kind === "problem") && node.path) {
      item.command = { command: "podlink.openConflict", title: "Open", arguments: [node] };
    }
    return item;
  }

  dispose(): void {
    this.subscription.dispose();
    this.changeEmitter.dispose();
  }
}
