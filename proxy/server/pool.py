"""The upstream pool of one server: its entries, their health and requests in flight,
and which upstream a reply's next attempt goes to.

Health is each process's own (``--workers N``: each worker learns it by itself); see
:class:`~proxy.core.routing.Health` for its table. A reload's new pool goes on with the
old one's health and requests in flight for each upstream it keeps under the same name
and ``base_url`` (the same server); a request that began under the old pool ends
there, on the shared record. An upstream whose ``base_url`` changed starts over.
"""

from __future__ import annotations

import time
from typing import Any

from ..config import Config, PoolEntry
from ..core.routing import Health, Price, UpstreamState
from ..errors import UpstreamsBusy

__all__ = ["UpstreamPool"]


class UpstreamPool:
    """``config.pool`` with its health. ``clock``: seconds (``time.monotonic``);
    ``previous``: the pool this one replaces (a reload), whose health and requests in
    flight go on here for the upstreams kept (see the module docstring)."""

    def __init__(self, config: Config, clock: Any = time.monotonic, previous: UpstreamPool | None = None) -> None:
        self.entries: dict[str, PoolEntry] = {u.name: u for u in config.pool}
        self.order = list(config.routing.order or self.entries)
        self.routing = config.routing
        self.health = Health(list(self.entries), config.routing.eject_after, config.routing.cooldown_s)
        if previous is not None:
            old = previous.entries
            self.health.carry(previous.health, [n for n, u in self.entries.items() if n in old and old[n].base_url == u.base_url])
        self.clock = clock
        self._prices = {name: {m: p.price() for m, p in u.prices.items()} for name, u in self.entries.items()}

    def names_for(self, upstreams: tuple[str, ...]) -> list[str]:
        """The names a profile's requests go to, in order (``upstreams``: the profile's own, or empty)."""
        return list(upstreams) if upstreams else self.order

    def pick(self, names: list[str], tried: set[str]) -> PoolEntry | None:
        """The next upstream of ``names`` not in ``tried``: the first that is ``ok`` and
        not full; when every such one is cooling, the first not full anyway; ``None``
        when ``names`` are all tried. Raises :class:`~proxy.errors.UpstreamsBusy` when
        the untried ones are all at their ``max_concurrent``."""
        left = [n for n in names if n not in tried]
        if not left:
            return None
        free = [n for n in left if not self._full(n)]
        if not free:
            raise UpstreamsBusy(f"every upstream is at its max_concurrent: {', '.join(left)}")
        now = self.clock()
        ready = [n for n in free if self.health.available(n, now)]
        return self.entries[(ready or free)[0]]

    def _full(self, name: str) -> bool:
        limit = self.entries[name].max_concurrent
        return limit is not None and self.health.in_flight(name) >= limit

    def price(self, name: str, model: Any) -> Price | None:
        """The configured price of ``model`` at upstream ``name``, or ``None``."""
        return self._prices[name].get(model) if isinstance(model, str) else None

    def states(self) -> dict[str, dict[str, Any]]:
        """name -> ``{"state": "ok" | "cooling" | "probing", "cooling_s": seconds left, "in_flight": n}``."""
        now = self.clock()
        out = {}
        for name in self.entries:
            state, left = self.health.state(name, now)
            if state is UpstreamState.COOLING and left == 0:
                state = UpstreamState.OK  # its cooldown is over: the next request goes there
            out[name] = {"state": str(state), "cooling_s": left, "in_flight": self.health.in_flight(name)}
        return out
