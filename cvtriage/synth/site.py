"""Several flights over one site: the same world flown again on another path (every other flight the
other way), at another time of day, with objects added, removed and moved between flights.

The site has `slots`, the places the flyover's objects would take. Before the first flight a share
of them is left empty (room to add objects later); between two flights `change_share` of the
objects present change, in turn (from a kind drawn for each flight) moved (by MOVE_M metres, to a
place still clear of every other object and inside the band the camera always sees), removed, and
added (an empty slot filled).
The plan is drawn from the seed alone, so every flight of a site draws the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MOVE_M = (5.0, 8.0)
CLEAR_SHARE = 0.75  # a moved object stays this share of the objects' minimum gap from every other
CHANGES = ("moved", "removed", "added")


@dataclass(frozen=True)
class SiteSpec:
    flights: int = 2
    flight: int = 0  # which one this is
    change_share: float = 0.2


@dataclass
class SitePlan:
    present: np.ndarray  # (flights, slots) bool
    shift: np.ndarray  # (flights, slots, 2): each object's offset from its slot, world px
    changes: list[dict]  # {"from", "to", "slot", "change", "moved_m"}

    def shifts(self) -> list[list[tuple[float, float]]]:
        """For each slot, the distinct places off the slot its object takes in any flight."""
        return [sorted({tuple(map(float, row)) for row in self.shift[:, slot] if row.any()}) for slot in range(self.shift.shape[1])]


def plan_site(site: SiteSpec, seed: int, xs: np.ndarray, ys: np.ndarray, middle_y: float, band: float, gap: float,
              metres_per_px: float) -> SitePlan:  # fmt: skip
    """Which objects each flight shows, and where (module docstring)."""
    rng = np.random.default_rng([seed, 0x517E])
    slots = len(xs)
    present = np.zeros((site.flights, slots), bool)
    shift = np.zeros((site.flights, slots, 2))
    reserve = rng.choice(slots, size=min(slots - 1, int(np.ceil(slots * site.change_share / len(CHANGES)))), replace=False) if slots > 1 else []
    present[0] = True
    present[0, reserve] = False
    changes = []
    for flight in range(1, site.flights):
        present[flight], shift[flight] = present[flight - 1], shift[flight - 1]
        shown = np.flatnonzero(present[flight - 1])
        wanted = max(1, int(round(site.change_share * len(shown))))
        order = list(rng.permutation(shown))
        empty = list(rng.permutation(np.flatnonzero(~present[flight - 1])))
        first = int(rng.integers(len(CHANGES)))
        for turn in range(wanted):
            change = CHANGES[(first + turn) % len(CHANGES)]
            if change == "added" and empty:
                slot = int(empty.pop())
                present[flight, slot] = True
                changes.append({"from": flight - 1, "to": flight, "slot": slot, "change": "added", "moved_m": None})
                continue
            if not order:
                break
            slot = int(order.pop())
            if change == "removed" or (change == "added" and not empty):
                present[flight, slot] = False
                changes.append({"from": flight - 1, "to": flight, "slot": slot, "change": "removed", "moved_m": None})
                continue
            moved = _move(rng, slot, xs, ys, shift[flight], middle_y, band, gap, metres_per_px)
            if moved is None:  # nowhere clear to go: removed instead
                present[flight, slot] = False
                changes.append({"from": flight - 1, "to": flight, "slot": slot, "change": "removed", "moved_m": None})
                continue
            distance = float(np.hypot(*(moved - shift[flight, slot]))) * metres_per_px
            shift[flight, slot] = moved
            changes.append({"from": flight - 1, "to": flight, "slot": slot, "change": "moved", "moved_m": round(distance, 2)})
    return SitePlan(present, shift, changes)


def _move(rng, slot, xs, ys, shifts, middle_y, band, gap, metres_per_px) -> np.ndarray | None:
    """A new offset for `slot`'s object, MOVE_M metres from where it is, clear of every other object."""
    here = np.array([xs[slot], ys[slot]]) + shifts[slot]
    others = np.stack([xs, ys], 1) + shifts
    others = np.delete(np.concatenate([others, np.stack([xs, ys], 1)]), [slot, len(xs) + slot], axis=0)
    for _ in range(100):
        angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(*MOVE_M) / metres_per_px
        target = here + length * np.array([np.cos(angle), np.sin(angle)])
        if abs(target[1] - middle_y) <= band and np.hypot(*(others - target).T).min(initial=np.inf) >= CLEAR_SHARE * gap:
            return target - np.array([xs[slot], ys[slot]])
    return None
