"""What every gateway route and socket needs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from faststream.kafka import KafkaBroker
from redis.asyncio import Redis

from orrery_gateway.fanin import TurnStreams
from orrery_gateway.hub import Hub
from orrery_gateway.limits import Limit, RateLimiter
from orrery_gateway.settings import GatewaySettings
from orrery_gateway.socket_leases import SocketLeases
from orrery_gateway.upstream import Upstreams
from orrery_shared.auth import JwtVerifier
from orrery_shared.auth.revoked import is_revoked


@dataclass
class Gateway:
    settings: GatewaySettings
    broker: KafkaBroker
    redis: Redis
    verifier: JwtVerifier
    upstreams: Upstreams
    hub: Hub
    limiter: RateLimiter
    streams: TurnStreams
    sockets: SocketLeases

    async def revoked(self, user_id: UUID) -> bool:
        """Whether the user's tokens are refused before they expire (an erased account)."""
        return await is_revoked(self.redis, user_id)

    @property
    def message_limit(self) -> Limit:
        return Limit("messages", self.settings.messages_per_minute, 60)

    @property
    def spin_limit(self) -> Limit:
        return Limit("spins", self.settings.spins_per_hour, 3600)

    @property
    def export_limit(self) -> Limit:
        return Limit("exports", self.settings.exports_per_hour, 3600)

    @property
    def import_limit(self) -> Limit:
        return Limit("imports", self.settings.imports_per_hour, 3600)
