"""``podlink status``, ``resume`` and ``reset``: the sessions running on this machine.

``resume`` and ``reset`` reach a running session through the signal side channel
(``podlink.signal_channel``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from podlink.cli.common import fail
from podlink.runtime import live_session_records
from podlink.signal_channel import SyncAction, ask_running_session
from podlink.terminal import plural

IGNORED_SHOWN = 5


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the sessions as JSON.")
def status(as_json: bool) -> None:
    """Show the sessions running on this machine (from `podlink up` or an editor)."""
    sessions = [record["session"] for record in live_session_records()]
    if as_json:
        click.echo(json.dumps(sessions, indent=2))
        return
    if not sessions:
        click.echo("no podlink sessions are running")
        return
    for session in sessions:
        sync = session["sync"]
        latency = sync.get("lastLatencyMs")
        click.echo(f"{session['folder']}  [{session['state']}]")
        click.echo(f"  target  {session['target']['kind']}: {session['target']['name']}")
        for problem in (session["target"].get("detail") or {}).get("problems") or []:
            click.echo(f"  pod     {problem}")
        click.echo(
            f"  sync    {sync['state']}, {sync['filesSynced']} files synced, "
            f"{sync['pending']} pending"
            + (f", last change in {latency:.0f} ms" if latency is not None else "")
        )
        ignored = sync.get("ignored")
        if ignored and (ignored["files"] or ignored["folders"]):
            shown = ", ".join(ignored["examples"][:IGNORED_SHOWN])
            more = ", …" if len(ignored["examples"]) > IGNORED_SHOWN else ""
            click.echo(
                f"  ignored {plural(ignored['files'], 'file')} and "
                f"{plural(ignored['folders'], 'folder')} not synced by ignore rules "
                f"({shown}{more}); `podlink why PATH` says which rule"
            )
        for problem in sync.get("problems", []):
            click.echo(f"  problem {problem['path']}: {problem['message']}")
        app = session.get("app")
        if app:
            code = f" (exit code {app['exitCode']})" if app.get("exitCode") is not None else ""
            click.echo(f"  app     {app['state']}{code}: {' '.join(app['command'])}")
        for forward in session.get("ports", []):
            problem = f" ({forward['error']})" if forward.get("error") else ""
            click.echo(
                f"  port    127.0.0.1:{forward['localPort']} -> {forward['remotePort']}: "
                f"{forward['state']}, {forward['connections']} connection(s){problem}"
            )
        if session.get("error"):
            click.echo(f"  error   {session['error']}")


@click.command("resume")
@click.argument("folder", type=click.Path(path_type=Path), default=".")
def resume(folder: Path) -> None:
    """Resume a sync that a safety halt paused, applying what it held back."""
    _ask_session(folder, "resume")


@click.command("reset")
@click.argument("folder", type=click.Path(path_type=Path), default=".")
def reset(folder: Path) -> None:
    """Forget the last synced state and sync afresh: the workspace is the truth."""
    _ask_session(folder, "reset")


def _ask_session(folder: Path, action: SyncAction) -> None:
    wanted = folder.resolve().as_uri()
    records = [r for r in live_session_records() if r["session"].get("folder") == wanted]
    if not records:
        fail(
            f"no running podlink session for {folder.resolve()}: start one with "
            f"`podlink up {folder}` (a paused sync is resumed in the session that paused it)",
            1,
        )
    for record in records:
        ask_running_session(record["session"]["id"], int(record["pid"]), action)
    click.echo(f"asked the session for {folder.resolve()} to {action} its sync")
