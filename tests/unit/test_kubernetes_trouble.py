"""What `pod_trouble` says for each pod status that explains a pod not serving."""

from __future__ import annotations

from types import SimpleNamespace as Fields
from typing import Any

import pytest

from podlink.targets.kubernetes.trouble import pod_trouble


def pod(
    *,
    waiting: tuple[str, str] | None = None,
    last_terminated: tuple[str, int] | None = None,
    unschedulable: str | None = None,
    container: str = "app",
) -> Any:
    state = Fields(
        waiting=Fields(reason=waiting[0], message=waiting[1]) if waiting else None,
        running=None if waiting else Fields(),
        terminated=None,
    )
    last = Fields(
        waiting=None,
        running=None,
        terminated=(
            Fields(reason=last_terminated[0], exit_code=last_terminated[1])
            if last_terminated
            else None
        ),
    )
    conditions = (
        [Fields(type="PodScheduled", status="False", reason="Unschedulable", message=unschedulable)]
        if unschedulable
        else [Fields(type="Ready", status="True", reason=None, message=None)]
    )
    statuses = [] if unschedulable else [Fields(name=container, state=state, last_state=last)]
    return Fields(
        metadata=Fields(name="web-1"),
        status=Fields(conditions=conditions, container_statuses=statuses),
    )


CASES = {
    "running": (pod(), None),
    "image never pulled": (
        pod(waiting=("ErrImageNeverPull", 'Container image "web:1" is not present')),
        "container app of pod web-1 does not have its image, and imagePullPolicy Never forbids "
        'pulling it (ErrImageNeverPull): Container image "web:1" is not present; load the '
        "image into the cluster, or let it be pulled",
    ),
    "pull back-off": (
        pod(waiting=("ImagePullBackOff", 'Back-off pulling image "127.0.0.1:5000/web:1"')),
        "container app of pod web-1 cannot pull its image (ImagePullBackOff): Back-off pulling "
        'image "127.0.0.1:5000/web:1"; push the image where the cluster pulls from, or fix '
        "its name",
    ),
    "crash loop after an OOM kill": (
        pod(waiting=("CrashLoopBackOff", "back-off 10s"), last_terminated=("OOMKilled", 137)),
        "container app of pod web-1 keeps crashing (CrashLoopBackOff): back-off 10s; was killed "
        "for using too much memory (OOMKilled, exit code 137); `podlink logs` shows what it "
        "printed",
    ),
    "running again after an OOM kill": (
        pod(last_terminated=("OOMKilled", 137)),
        "container app of pod web-1 was killed for using too much memory (OOMKilled, exit code "
        "137); raise its memory limit, or use less memory",
    ),
    "exited with an error, running again": (pod(last_terminated=("Error", 1)), None),
    "unschedulable": (
        pod(unschedulable="0/1 nodes are available: 1 Insufficient memory."),
        "pod web-1 cannot be scheduled (FailedScheduling): 0/1 nodes are available: 1 "
        "Insufficient memory.",
    ),
    "another container's trouble": (
        pod(waiting=("CrashLoopBackOff", "back-off"), container="sidecar"),
        None,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_pod_trouble_names_the_reason_the_message_and_what_to_do(case: str) -> None:
    given, expected = CASES[case]
    assert pod_trouble(given, "app") == expected
