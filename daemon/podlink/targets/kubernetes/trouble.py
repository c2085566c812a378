"""What a pod's status says went wrong, in one line a developer can act on.

Pure: a pod object in (the client's model, or anything with its attribute names), a line or
None out. The reasons are the ones that explain why a pod does not serve: it cannot be
placed (FailedScheduling), its image cannot be had (ErrImagePull, ImagePullBackOff,
ErrImageNeverPull, InvalidImageName), its container keeps crashing (CrashLoopBackOff) or was
killed for memory (OOMKilled), or its configuration is broken (CreateContainerConfigError).
"""

from __future__ import annotations

from typing import Any

WAITING_TROUBLE = {
    "ErrImagePull": "cannot pull its image",
    "ImagePullBackOff": "cannot pull its image",
    "ErrImageNeverPull": "does not have its image, and imagePullPolicy Never forbids pulling it",
    "InvalidImageName": "names an invalid image",
    "CrashLoopBackOff": "keeps crashing",
    "CreateContainerConfigError": "has a configuration that cannot be used",
    "CreateContainerError": "cannot be created",
}
HINTS = {
    "ErrImageNeverPull": "load the image into the cluster, or let it be pulled",
    "ErrImagePull": "push the image where the cluster pulls from, or fix its name",
    "ImagePullBackOff": "push the image where the cluster pulls from, or fix its name",
    "CrashLoopBackOff": "`podlink logs` shows what it printed",
    "OOMKilled": "raise its memory limit, or use less memory",
}


def pod_trouble(pod: Any, container: str | None) -> str | None:
    """The reason ``pod`` (its ``container``, or any container when None) does not serve,
    with the message Kubernetes gave; None when nothing is wrong that podlink can name."""
    name = pod.metadata.name
    status = pod.status
    if status is None:
        return None
    for condition in status.conditions or []:
        if (
            condition.type == "PodScheduled"
            and condition.status == "False"
            and condition.reason == "Unschedulable"
        ):
            return f"pod {name} cannot be scheduled (FailedScheduling): {condition.message or ''}"
    for each in status.container_statuses or []:
        if container is not None and each.name != container:
            continue
        state = each.state
        waiting = state.waiting if state is not None else None
        if waiting is not None and waiting.reason in WAITING_TROUBLE:
            line = f"container {each.name} of pod {name} {WAITING_TROUBLE[waiting.reason]} "
            line += f"({waiting.reason})"
            if waiting.message:
                line += f": {waiting.message}"
            oom = _oom(each)
            if oom:
                line += f"; {oom}"
            return _hinted(line, waiting.reason)
        oom = _oom(each)
        if oom:
            return _hinted(f"container {each.name} of pod {name} {oom}", "OOMKilled")
    return None


def _oom(status: Any) -> str:
    """What an OOM kill of the current or last instance says, or ''."""
    for state in (status.state, status.last_state):
        terminated = state.terminated if state is not None else None
        if terminated is not None and terminated.reason == "OOMKilled":
            code = terminated.exit_code
            return f"was killed for using too much memory (OOMKilled, exit code {code})"
    return ""


def _hinted(line: str, reason: str) -> str:
    hint = HINTS.get(reason)
    return f"{line}; {hint}" if hint else line


def why_unusable(pod: Any, container: str, namespace: str, events: list[str]) -> str:
    """Why commands cannot run in ``container`` of ``pod``, with its last ``events``."""
    name = pod.metadata.name
    status = pod.status
    reason = f"is {status.phase or 'in an unknown phase'}"
    for condition in status.conditions or []:
        if condition.status == "False" and condition.reason:
            reason += f" ({condition.reason}: {condition.message or ''})".replace(": )", ")")
    for each in status.container_statuses or []:
        waiting = each.state.waiting if each.state is not None else None
        if each.name == container and waiting is not None:
            reason = f"has container {container} waiting in {waiting.reason}"
            if waiting.message:
                reason += f" ({waiting.message})"
            if each.restart_count:
                reason += f" after {each.restart_count} restarts"
    shown = "; last events: " + "; ".join(events) if events else ""
    return (
        f"pod {name} in namespace {namespace!r} {reason}{shown}. "
        f"`kubectl describe pod {name} -n {namespace}` shows more"
    )
