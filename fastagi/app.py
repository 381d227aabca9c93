"""The gateway process: builds every part from the configuration and runs them together."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from .actions import ACTIONS  # noqa: F401 - declares every action
from .actions.context import MediaSettings
from .actions.dispatch import Dispatcher
from .agi.server import AgiServer, AgiServerSettings
from .ami.listener import AmiListener, AmiSettings
from .audiosocket.server import AudioSocketServer
from .audiosocket.server import MediaSettings as SocketMediaSettings
from .bridge import CallBridge
from .config import PROFILE_KEYS, Config, Section
from .control import start_control
from .loopmonitor import LoopMonitor
from .manager.accounts import Account, AccountManager
from .manager.events import EventBus
from .manager.store import Store
from .media.callmedia import CallMedia
from .media.engine import MediaEngine
from .metrics import start_metrics
from .network.driver import Profile
from .network.embedded import EmbeddedNetwork, ScriptedUser, Timing

log = logging.getLogger("fastagi")


def profile_of(name: str, section: Section, status: str = "ONLINE") -> Profile:
    values = {key.name: section.values.get(key.name, "") for key in PROFILE_KEYS}
    values["displayname"] = values["displayname"] or values["fullname"]
    return Profile(handle=name, online_status=status, **values)


def scripted_user(name: str, section: Section) -> ScriptedUser:
    status = "OFFLINE" if section.behaviour == "offline" else section.status.upper()  # Skype's presence names
    return ScriptedUser(
        profile_of(name, section, status), behaviour=section.behaviour, ring_delay=section.ring_delay,
        answer_delay=section.answer_delay, auth_policy=section.auth_policy, voicemail=section.voicemail,
        greeting=section.greeting,
    )


class Gateway:
    """Everything `serve` runs: FastAGI, AudioSocket and control servers, AMI, account manager, network, media."""

    def __init__(self, config: Config) -> None:
        self.config = config
        general = config.general
        self.bus = EventBus()
        self.store = Store(general.database, general.database_sync)
        profiles = {name: profile_of(name, s) for name, s in config.accounts.items()}
        self.network = EmbeddedNetwork(
            users={name: scripted_user(name, s) for name, s in config.users.items() if name not in config.accounts},
            account_profiles=profiles,
            incoming_dir=Path(general.incoming_dir),
            sms_price=general.sms_price,
            timing=Timing(ring_timeout=general.ring_timeout),
        )
        accounts = [
            Account(name, profiles[name], s.currency, s.auth_policy, s.voicemail, s.unanswered)
            for name, s in config.accounts.items()
        ]
        self.manager = AccountManager(
            accounts, self.store, self.network, self.bus, Path(general.incoming_dir), general.ring_timeout
        )
        self.manager.seed_balances({name: (s.balance, s.currency) for name, s in config.accounts.items()})
        self.media = MediaEngine()
        self.loop_monitor = LoopMonitor()
        self.call_media = CallMedia(self.media, self._conference_of)
        self.network.media_hooks = self.call_media
        self.bus.subscribe(self.call_media.on_event)
        self.dispatcher = Dispatcher(
            self.manager, general.variable_prefix,
            MediaSettings(Path(general.media_dir), tuple(Path(p) for p in general.media_path), int(general.record_rate)),
            services={"media": self.call_media},
        )
        self.bridge = CallBridge(self.manager, self.call_media)
        sockets = config.audiosocket
        self.audiosocket = (
            AudioSocketServer(sockets.bind, sockets.port, self.bridge,
                              media=SocketMediaSettings(jitter_target_frames=sockets.jitter_frames))
            if sockets.enabled else None
        )
        self.ami = self._ami_listener(config) if config.ami.enabled else None
        if self.ami is not None:
            self.bridge.play_dtmf = self.ami.play_dtmf
        self.agi = AgiServer(
            AgiServerSettings(
                bind=general.bind, port=general.port, permit=tuple(general.permit),
                environment_timeout=general.environment_timeout, session_timeout=general.session_timeout,
                max_connections=general.max_connections,
            ),
            self.dispatcher,
        )

    def _ami_listener(self, config: Config) -> AmiListener:
        ami = config.ami
        settings = AmiSettings(
            host=ami.host, port=ami.port, username=ami.username, secret=ami.secret,
            incoming_context=ami.incoming_context, events_context=ami.events_context or None,
            queue_size=ami.queue_size, ping_interval=ami.ping_interval, ping_timeout=ami.ping_timeout,
            incoming_media=ami.incoming_media, variable_prefix=config.general.variable_prefix,
            originate_timeout_ms=int(ami.originate_timeout * 1000),
            audiosocket_address=f"{config.audiosocket.bind}:{config.audiosocket.port}",
        )
        return AmiListener(settings, self.bus, self._incoming_unhandled)

    def _incoming_unhandled(self, account: str, call_id: str) -> None:
        self.manager.incoming_unhandled(account, int(call_id))

    def _conference_of(self, account: str, call_id: int) -> int | None:
        call = self.manager.calls.get(call_id)
        return call.conference_id if call is not None and call.account == account else None

    async def start(self) -> None:
        self.control = await start_control(self)  # first: refuses to run beside a live server
        self.metrics = start_metrics(self)  # None unless [general] metrics is set
        self.loop_monitor.start()
        self.media.start()
        if self.audiosocket is not None:
            await self.audiosocket.start()
        if self.ami is not None:
            if self.audiosocket is not None:  # the real port, when it was 0
                self.ami.settings.audiosocket_address = f"{self.config.audiosocket.bind}:{self.audiosocket.port}"
            await self.ami.start()
        await self.agi.start()
        self.manager.set_presence("ONLINE")
        log.info("serving %d account(s): %s", len(self.manager.accounts), ", ".join(self.manager.names()))

    async def stop(self) -> None:
        """Stop accepting, let sessions finish (bounded), end calls, flush state."""
        await self.control.stop()  # no admin action once shutdown begins
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)  # blocks up to 0.5 s
        await self.agi.stop(self.config.general.shutdown_grace)
        if self.audiosocket is not None:
            await self.audiosocket.stop()
        await self.manager.close()
        self.manager.set_presence("OFFLINE")
        if self.ami is not None:
            await self.ami.drain(self.config.general.shutdown_grace)  # the last calls' and OFFLINE events
            await self.ami.stop()
        await self.network.close()
        self.call_media.close()
        await self.media.stop()
        self.loop_monitor.stop()
        self.store.close()
        log.info("stopped")


def with_ports(config: Config, agi: int, audiosocket: int) -> Config:
    """A copy of `config` listening on other ports (tests use 0: any free port)."""
    general = replace(config.general, values={**config.general.values, "port": agi})
    sockets = replace(config.audiosocket, values={**config.audiosocket.values, "port": audiosocket})
    return replace(config, general=general, audiosocket=sockets)
