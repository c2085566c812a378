"""Kustomizations and helm charts of ``deploy:``, rendered to YAML by their own tools.

A kustomization is rendered by ``kubectl kustomize`` (kubectl carries kustomize) or, without
kubectl, by a ``kustomize`` binary; a helm release by ``helm template``. Both need no
cluster. podlink reads the YAML they print and applies it as it applies a manifest file.
Missing tools and failed renders are ConfigErrors naming the folder or chart, with the
tool's own message and what to install.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from podlink.config import ConfigError, HelmReleaseConfig

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
RENDER_SECONDS = 120.0


def kustomization_of(folder: Path) -> Path | None:
    """The kustomization file that makes ``folder`` a kustomization, if any."""
    for name in KUSTOMIZATION_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def render_kustomization(folder: Path) -> tuple[str, str]:
    """The YAML the kustomization in ``folder`` renders to, and the command that rendered it."""
    kubectl = shutil.which("kubectl")
    kustomize = shutil.which("kustomize")
    if kubectl is not None:
        argv = [kubectl, "kustomize", str(folder)]
        shown = "kubectl kustomize"
    elif kustomize is not None:
        argv = [kustomize, "build", str(folder)]
        shown = "kustomize build"
    else:
        raise ConfigError(
            kustomization_of(folder) or folder,
            "rendering this kustomization needs kubectl or kustomize, and neither is on PATH",
            hint="install kubectl (it includes kustomize), or list plain manifest files instead",
        )
    return _run(argv, shown, kustomization_of(folder) or folder), shown


def render_helm(workspace: Path, release: HelmReleaseConfig, namespace: str) -> str:
    """The YAML ``helm template`` renders ``release`` to, in ``namespace``."""
    helm = shutil.which("helm")
    chart_folder = (workspace / release.chart).resolve()
    blame = chart_folder if chart_folder.is_dir() else workspace
    if helm is None:
        raise ConfigError(
            blame,
            f"deploy.helm release {release.release!r} needs helm, and there is no helm on PATH",
            hint="install helm 3 (https://helm.sh/docs/intro/install/), or render the chart "
            "to manifests and list them in deploy.manifests",
        )
    chart = str(chart_folder) if chart_folder.is_dir() else release.chart
    argv = [helm, "template", release.release, chart, "--namespace", namespace]
    for values in release.values:
        argv += ["--values", str((workspace / values).resolve())]
    for key, value in release.set.items():
        argv += ["--set", f"{key}={_helm_value(value)}"]
    return _run(argv, "helm template", blame, cwd=workspace)


def _helm_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _run(argv: list[str], shown: str, blame: Path, *, cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=RENDER_SECONDS, cwd=cwd, check=False
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(
            blame,
            f"`{shown}` did not finish in {RENDER_SECONDS:.0f} s",
            hint="a remote base or chart may not answer; try the command by hand",
        ) from None
    except OSError as error:
        raise ConfigError(blame, f"cannot run `{shown}`: {error}") from None
    if result.returncode != 0:
        reason = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
        raise ConfigError(
            blame,
            f"`{shown}` failed: {reason}",
            hint=f"run `{' '.join([Path(argv[0]).name, *argv[1:]])}` to see the whole message",
        )
    return result.stdout
