"""The lease's clocks, pure: the leader's deadline and a standby's view of the holder's.

Both on the local monotonic clock; see ``lease.py`` for why the leader's deadline
comes before Redis's expiry, and :class:`HolderWatch` for why a standby does not
take a lease the moment it finds the key gone.
"""

from __future__ import annotations

from dataclasses import dataclass


class LeaseLost(Exception):
    """This poller does not hold the lease (any more): it must not write."""


@dataclass(slots=True)
class LeaseTimer:
    """The leader's view of its lease, on the local monotonic clock (pure).

    ``deadline`` is when the leader stops believing it holds the lease: the send
    time of the last successful take/renew plus ``ttl - margin``. Renewals are due
    every ``renew_every`` (a third of the TTL by default, so two can fail before the
    deadline); after a failed one, the next is tried ``retry_every`` later.
    """

    ttl: float
    margin: float
    renew_every: float
    retry_every: float
    deadline: float | None = None
    next_renewal: float = 0.0

    @classmethod
    def for_ttl(cls, ttl: float) -> LeaseTimer:
        return cls(ttl=ttl, margin=ttl / 5, renew_every=ttl / 3, retry_every=ttl / 10)

    def held(self, now: float) -> bool:
        return self.deadline is not None and now < self.deadline

    def check(self, now: float) -> None:
        """Raise :class:`LeaseLost` unless the lease is held at ``now``."""
        if not self.held(now):
            raise LeaseLost("the lease is not held (expired or taken)")

    def taken(self, sent_at: float) -> None:
        """A take or renewal sent at ``sent_at`` succeeded."""
        self.deadline = sent_at + self.ttl - self.margin
        self.next_renewal = sent_at + self.renew_every

    renewed = taken

    def renewal_failed(self, now: float) -> None:
        self.next_renewal = now + self.retry_every

    def dropped(self) -> None:
        self.deadline = None

    def wake_at(self) -> float:
        """When the renewal loop must act next: a renewal, or the deadline."""
        assert self.deadline is not None
        return min(self.next_renewal, self.deadline)


@dataclass(slots=True)
class HolderWatch:
    """A standby's idea of when the current holder's lease ends (pure).

    ``until`` is measured when the key's PTTL *arrived*, so it is never earlier than
    Redis's expiry; the holder stops writing ``margin`` before that expiry (its
    ``LeaseTimer``). So from ``until - margin`` on, taking the lease is safe even if
    the key is gone for another reason than expiry. Before that, a key found gone was
    lost by Redis (a restart without persistence, a flush) while its holder still
    writes: the standby leaves it alone for one more ``ttl``, in which a live holder
    sets it again on its next renewal; a dead one does not, and then it is taken.
    """

    ttl: float
    margin: float
    until: float = 0.0
    present: bool = False  # the key was there at the last look

    @classmethod
    def for_ttl(cls, ttl: float) -> HolderWatch:
        return cls(ttl=ttl, margin=LeaseTimer.for_ttl(ttl).margin)

    def may_take(self, now: float) -> bool:
        return now >= self.until - self.margin

    def seen(self, now: float, pttl_ms: int) -> None:
        """The key's PTTL, its reply received at ``now`` (-2: absent; -1: no expiry)."""
        if pttl_ms >= 0:
            self.until = now + pttl_ms / 1000
        elif pttl_ms == -1 or (self.present and not self.may_take(now)):
            # No expiry (set by hand), or just gone before its holder stopped writing
            # (once per disappearance: then the ttl runs out as usual).
            self.until = now + self.ttl
        self.present = pttl_ms != -2
