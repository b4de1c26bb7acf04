"""Snapshots by replay, for engines that cannot copy their state.

None of the three engines can hand over its state as a value: Jericho's copy holds a C
interpreter, ALFWorld's PDDL state lives in Fast Downward's library, and ScienceWorld's world
lives in a JVM. Their episodes are deterministic, though, so an episode is fully described by
what started it and the actions taken since. A ``ReplaySnapshot`` is that record, plus the
adapter's own view of the last step (observation, info, score) so a restore need not recompute
it. It is small and picklable, so it crosses ``SubprocessEnv``'s pipe.

``restore_by_replay`` costs one engine restart plus one engine step per recorded action; when
the engine is still in the same episode and has taken a prefix of the snapshot's actions (a
restore "forward"), it replays only the missing ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import gymnasium as gym

Episode = TypeVar("Episode", bound=Hashable)


class ReplayDivergence(RuntimeError):
    """Replaying a snapshot's actions gave a different observation: the engine is not
    deterministic for this episode, so replay cannot restore it."""


@dataclass(frozen=True)
class ReplaySnapshot(Generic[Episode]):
    """An episode as an engine can rebuild it.

    ``episode`` is what the adapter's restart takes (game file, seed, task and variation),
    ``actions`` the engine commands sent since, ``obs`` the observation they ended on, and
    ``view`` the adapter's own state after them (its info, last score), put back as it was.
    """

    episode: Episode
    actions: tuple[str, ...]
    obs: str
    view: Any = None


def restore_by_replay(
    current: ReplaySnapshot[Episode] | None,
    target: ReplaySnapshot[Episode],
    restart: Callable[[Episode], str],
    step: Callable[[str], str],
) -> None:
    """Drive the engine from ``current`` (None: unknown) to ``target``'s state.

    ``restart(episode)`` starts the episode afresh and returns its first observation;
    ``step(action)`` sends one command and returns its observation. Neither should compute
    anything the adapter does not need during the replay (admissible lists, plans).
    """
    done = 0
    if (
        current is None
        or current.episode != target.episode
        or target.actions[: len(current.actions)] != current.actions
    ):
        obs = restart(target.episode)
    else:
        done, obs = len(current.actions), current.obs
    for action in target.actions[done:]:
        obs = step(action)
    if obs != target.obs:
        raise ReplayDivergence(
            f"replaying {len(target.actions)} actions of episode {target.episode!r} ended on "
            f"{obs[:200]!r}, not on the snapshot's {target.obs[:200]!r}"
        )


class ReplaySnapshots(ABC):
    """``snapshot()`` / ``restore()`` by replay, for an adapter that keeps ``_episode``,
    ``_actions`` and ``_obs`` and says how to restart, step, and read and put back its view."""

    _episode: Any
    _actions: list[str]
    _obs: str

    def snapshot(self) -> ReplaySnapshot[Any]:
        """What started the episode and the commands since (restored by replaying them)."""
        if not self._started():
            raise gym.error.ResetNeeded("call reset() before snapshot()")
        return ReplaySnapshot(self._episode, tuple(self._actions), self._obs, self._view())

    def restore(self, snap: ReplaySnapshot[Any]) -> None:
        current = self.snapshot() if self._started() else None
        restore_by_replay(current, snap, self._restart, self._engine_step)
        self._obs = snap.obs
        self._set_view(snap.view)

    @abstractmethod
    def _started(self) -> bool:
        """Whether an episode is running."""

    @abstractmethod
    def _view(self) -> Any:
        """The adapter's own state after the last step (info, score...)."""

    @abstractmethod
    def _set_view(self, view: Any) -> None:
        """Put a ``_view()`` back."""

    @abstractmethod
    def _restart(self, episode: Any) -> str:
        """Start ``episode`` afresh; its first observation."""

    @abstractmethod
    def _engine_step(self, command: str) -> str:
        """Send one command (recording it in ``_actions``); its observation."""
