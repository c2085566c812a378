"""What podlink put into a cluster for a workspace, so that ``podlink purge`` removes exactly that.

One JSON file per workspace folder under the state directory lists the objects a deploy
created (with their uid: an object someone made again under the same name is not podlink's
and stays), the tags pushed to a registry (with their digest) and the images imported into
a containerd. An object that existed before podlink applied it is not listed: purge leaves
it. Images built on this machine's Docker Engine are listed too (without a label: a label
costs the classic builder a step, a container, per build).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from podlink.runtime import state_dir


@dataclass(frozen=True)
class AppliedObject:
    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.kind.lower()}/{self.name}{where}"


@dataclass(frozen=True)
class PushedTag:
    reference: str  # registry/repository:tag
    digest: str

    def __str__(self) -> str:
        return f"tag {self.reference} in its registry"


@dataclass(frozen=True)
class LocalImage:
    """An image built on this machine's Docker Engine; removed only while the reference
    still names that image."""

    reference: str
    image_id: str

    def __str__(self) -> str:
        return f"image {self.reference} ({self.image_id.removeprefix('sha256:')[:12]})"


@dataclass(frozen=True)
class ImportedImage:
    reference: str
    socket: str

    def __str__(self) -> str:
        return f"image {self.reference} in the containerd at {self.socket}"


@dataclass
class Ledger:
    folder: str
    objects: list[AppliedObject] = field(default_factory=list)
    pushed: list[PushedTag] = field(default_factory=list)
    imported: list[ImportedImage] = field(default_factory=list)
    built: list[LocalImage] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.objects or self.pushed or self.imported or self.built)


Entry = AppliedObject | PushedTag | ImportedImage | LocalImage

_lock = threading.Lock()


def ledger_path(folder: Path) -> Path:
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return state_dir() / "kubernetes" / f"{key}.json"


def read_ledger(folder: Path) -> Ledger:
    """What the ledger of ``folder`` lists; empty when there is none (or it is unreadable)."""
    path = ledger_path(folder)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return Ledger(
            folder=str(data.get("folder", folder)),
            objects=[AppliedObject(**entry) for entry in data.get("objects", [])],
            pushed=[PushedTag(**entry) for entry in data.get("pushed", [])],
            imported=[ImportedImage(**entry) for entry in data.get("imported", [])],
            built=[LocalImage(**entry) for entry in data.get("built", [])],
        )
    except (OSError, ValueError, TypeError):
        return Ledger(folder=str(folder.resolve()))


def write_ledger(folder: Path, ledger: Ledger) -> None:
    """Replace the ledger (atomically); an empty one is removed."""
    path = ledger_path(folder)
    if ledger.empty:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(ledger), indent=1), encoding="utf-8")
    temporary.replace(path)


def record(folder: Path, entry: Entry) -> None:
    """Add one thing podlink made to the folder's ledger (once)."""
    with _lock:
        ledger = read_ledger(folder)
        if isinstance(entry, AppliedObject):
            ledger.objects = [o for o in ledger.objects if _key(o) != _key(entry)] + [entry]
        elif isinstance(entry, PushedTag):
            if entry not in ledger.pushed:
                ledger.pushed.append(entry)
        elif isinstance(entry, LocalImage):
            if entry not in ledger.built:
                ledger.built.append(entry)
        elif entry not in ledger.imported:
            ledger.imported.append(entry)
        write_ledger(folder, ledger)


def forget(folder: Path, entry: Entry) -> None:
    """Drop one entry: purge removed it, or it is gone."""
    with _lock:
        ledger = read_ledger(folder)
        ledger.objects = [o for o in ledger.objects if o != entry]
        ledger.pushed = [p for p in ledger.pushed if p != entry]
        ledger.imported = [i for i in ledger.imported if i != entry]
        ledger.built = [b for b in ledger.built if b != entry]
        write_ledger(folder, ledger)


def _key(entry: AppliedObject) -> tuple[str, str, str, str]:
    return (entry.api_version, entry.kind, entry.namespace, entry.name)
