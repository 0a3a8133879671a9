"""A file a node needs, as the program renders it (pure data)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeFile:
    name: str
    """Stable name of the file within its bundle (e.g. ``nebula/host.key``)."""
    path: str
    """Absolute destination on the node."""
    mode: str
    """Octal permission bits, e.g. ``0600``."""
    content: str
    owner: str = "root"
    restart: tuple[str, ...] = ()
    """systemd units to restart when this file changes."""

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"{self.name}: path '{self.path}' is not absolute")
        if len(self.mode) != 4 or not set(self.mode) <= set("01234567"):
            raise ValueError(f"{self.name}: mode '{self.mode}' is not four octal digits")
