"""Trajectory trees drawn for the terminal, as ``rich`` trees.

Each node is one segment: the prompt, a model turn (its text and mean token entropy), or an
environment result. Branch points (tool results more than one path continues from) are marked,
and every leaf carries its path's end reason, return and advantage. Segment text is shown as
plain text, never as markup, so a model that writes ``[bold]`` prints ``[bold]``.
"""

from __future__ import annotations

from rich.text import Text
from rich.tree import Tree

from branchgym.trajectory import Group, Segment, SegmentKind, Trajectory


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _label(seg: Segment, n_kids: int, leaf: Trajectory | None, width: int) -> Text:
    if seg.kind is SegmentKind.MODEL:
        mean_h = sum(seg.entropies) / len(seg.entropies) if seg.entropies else 0.0
        label = Text.assemble(
            ("act ", "bold cyan"), _clip(seg.text, width), (f"  H={mean_h:.2f}", "dim")
        )
    else:
        tag = "prompt " if seg.parent_id is None else "result "
        label = Text.assemble((tag, "bold green"), _clip(seg.text, width))
    if n_kids > 1 and seg.parent_id is not None:
        label.append(f"  ◆ branch ×{n_kids}", style="bold magenta")
    if leaf is not None:
        label.append(
            f"  → {leaf.end_reason.value} R={leaf.ret:.2f} A={leaf.advantage:+.2f}",
            style="bold yellow",
        )
    return label


def tree_view(
    group: Group, title: str = "", width: int = 70, traj_ids: list[int] | None = None
) -> Tree:
    """The group as a ``rich.tree.Tree`` rooted at its prompt; leaves show ``traj_ids``."""
    kids: dict[int | None, list[Segment]] = {}
    for seg in group.segments:
        kids.setdefault(seg.parent_id, []).append(seg)
    leaves = {t.leaf_id: t for t in group.trajectories}
    names = dict(zip((t.leaf_id for t in group.trajectories), traj_ids or [], strict=False))
    head = title or f"{group.task.env_id} seed {group.task.seed} · step {group.step}"
    root = Tree(Text(f"{head} · {len(group.trajectories)} trajectories", style="bold"))

    def grow(node: Tree, seg: Segment) -> None:
        children = kids.get(seg.id, [])
        label = _label(seg, len(children), leaves.get(seg.id), width)
        if seg.id in names:
            label.append(f"  #{names[seg.id]}", style="bold")
        branch = node.add(label)
        for child in children:
            grow(branch, child)

    for top in kids.get(None, []):
        grow(root, top)
    return root
