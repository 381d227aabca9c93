"""The gateway process: builds every part from the configuration, wires them, runs them together.

This is the only module that names a network driver's class; everything else reaches a
network through `network.driver` (the accounts of every network through one `Networks`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .actions import ACTIONS  # noqa: F401 - declares every action
from .actions.context import MIB, MediaSettings
from .actions.dispatch import Dispatcher
from .agi.actions import AgiActions
from .agi.server import AgiServer, AgiServerSettings
from .ami.listener import AmiListener
from .ami.settings import AmiSettings
from .audiosocket.port import MediaSettings as SocketMediaSettings
from .audiosocket.server import AudioSocketServer
from . import eventlog
from .bridge import CallBridge
from .config import PROFILE_KEYS, Config, Section, settings
from .control.history import EventHistory
from .control.server import Admin, ControlServer
from .loopmonitor import LoopMonitor
from .manager.accounts import AccountManager
from .manager.store import Store
from .media.callmedia import CallMedia
from .media.voicemail import VoicemailBox
from .media.engine import MediaEngine
from .media.ports import PlaybackPort
from .media.wav import WavPlayer, load_wav
from .metrics import ActionMetrics, MetricsServer, StatusCollector
from .model.accounts import Account
from .model.audio import AudioPort
from .model.events import EventBus
from .model.profiles import Profile
from .network.driver import NetworkDriver
from .network.embedded import EmbeddedNetwork, ScriptedUser, Timing
from .network.router import Networks
from .status import GatewayStatus

if TYPE_CHECKING:
    from .network.xmpp.network import XmppNetwork

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
        greeting=greeting_voice(name, section.greeting) if section.greeting is not None else None,
    )


def greeting_voice(name: str, path: Path) -> Callable[[], AudioPort] | None:
    """What plays a scripted user's greeting in a call (read now, once); None, with a warning, if it cannot be used."""
    try:
        samples = load_wav(path)
    except Exception as exc:  # noqa: BLE001 - a broken greeting must not stop the gateway
        log.warning("greeting of %s unusable (%s): silent instead", name, exc)
        return None
    return lambda: PlaybackPort(WavPlayer(samples, loop=True))


def xmpp_network(config: Config, audio: CallMedia) -> XmppNetwork | None:
    """The XMPP network of the accounts with `network = xmpp`, if any (slixmpp is imported only then)."""
    sections = {name: section for name, section in config.accounts.items() if section.network == "xmpp"}
    if not sections:
        return None
    from .network.xmpp.account import Timing, XmppSettings
    from .network.xmpp.network import XmppNetwork

    general = config.general
    accounts = {name: settings(XmppSettings, section) for name, section in sections.items()}
    voicemail = VoicemailBox(audio, Path(general.media_dir) / "voicemail", int(general.record_rate))
    return XmppNetwork(accounts, Path(general.incoming_dir), audio, voicemail, Timing(general.network_timeout),
                       max_file_size=general.max_file_size * MIB, ring_timeout=general.ring_timeout,
                       media_timeout=general.media_timeout)


class Gateway:
    """Everything `serve` runs: FastAGI, AudioSocket and control servers, AMI, account manager, network, media."""

    def __init__(self, config: Config) -> None:
        self.config = config
        general = config.general
        self.bus = EventBus()
        eventlog.subscribe(self.bus)  # first: a subscriber's failure is logged after the event it failed on
        self.store = Store(general.database, general.database_sync)
        self.history = EventHistory(self.store, self.bus)
        self.media = MediaEngine()
        self.loop_monitor = LoopMonitor()
        self.call_media = CallMedia(self.media, self.bus)
        profiles = {name: profile_of(name, s) for name, s in config.accounts.items()}
        self.embedded = EmbeddedNetwork(
            users={name: scripted_user(name, s) for name, s in config.users.items() if name not in config.accounts},
            account_profiles={name: profiles[name] for name, s in config.accounts.items() if s.network == "embedded"},
            incoming_dir=Path(general.incoming_dir),
            audio=self.call_media,
            sms_price=general.sms_price,
            timing=Timing(ring_timeout=general.ring_timeout),
        )
        self.xmpp = xmpp_network(config, self.call_media)
        drivers: list[NetworkDriver] = [self.embedded] if self.xmpp is None else [self.embedded, self.xmpp]
        self.networks = Networks(drivers, {name: s.network for name, s in config.accounts.items()})
        accounts = [
            Account(name, profiles[name], s.currency, s.auth_policy, s.voicemail, s.unanswered, s.network)
            for name, s in config.accounts.items()
        ]
        self.manager = AccountManager(
            accounts, self.store, self.networks, self.bus, Path(general.incoming_dir), general.ring_timeout
        )
        self.manager.deliveries.seed_balances({name: (s.balance, s.currency) for name, s in config.accounts.items()})
        self.ami = (
            AmiListener(settings(AmiSettings, config.ami, general), self.bus, self.manager.calls.incoming_unhandled,
                        audiosocket_address=lambda: f"{config.audiosocket.bind}:{self.audiosocket.port}",
                        next_seq=lambda: self.store.next_id("ami_seq"))
            if config.ami.enabled else None
        )
        self.bridge = CallBridge(self.manager.calls, self.call_media, self.bus,
                                 play_dtmf=self.ami.play_dtmf if self.ami is not None else None)
        sockets = config.audiosocket
        self.audiosocket = AudioSocketServer(sockets.bind, sockets.port, self.bridge, permit=sockets.permit,
                                             media=settings(SocketMediaSettings, sockets), clock=self.media)
        self.action_metrics = ActionMetrics() if general.metrics is not None else None
        self.dispatcher = Dispatcher(
            self.manager, self.call_media, general.variable_prefix,
            MediaSettings(Path(general.media_dir), tuple(Path(p) for p in general.media_path), int(general.record_rate),
                          general.max_file_size * MIB),
            observers=(self.action_metrics.observe,) if self.action_metrics is not None else (),
        )
        self.agi = AgiServer(settings(AgiServerSettings, general), AgiActions(self.dispatcher))
        self.status = GatewayStatus(self.manager, self.agi, self.media, self.loop_monitor, self.ami)
        if self.action_metrics is not None:
            self.action_metrics.registry.register(StatusCollector(self.status))
        self.control = ControlServer(Path(general.control_socket),
                                     Admin(self.status, self.dispatcher, self.bus, self.history, self.embedded))
        self.metrics: MetricsServer | None = None

    async def start(self) -> None:
        await self.control.start()  # first: refuses to run beside a live server
        try:
            await self._start_services()
        except BaseException:  # a busy port: undo what started, the control socket file included
            await self.stop()
            raise
        names = self.manager.accounts.names()
        log.info("serving %d account(s): %s", len(names), ", ".join(names))

    async def _start_services(self) -> None:
        if self.action_metrics is not None:
            self.metrics = MetricsServer(self.config.general.metrics, self.action_metrics.registry)
            await self.metrics.start()
        self.loop_monitor.start()
        self.media.start()
        if self.config.audiosocket.enabled:
            await self.audiosocket.start()
        if self.ami is not None:
            await self.ami.start()
        await self.agi.start()
        await self.networks.start()

    async def stop(self) -> None:
        """Stop accepting, let sessions finish (bounded), end calls, flush state."""
        await self.control.stop()  # no admin action once shutdown begins
        if self.metrics is not None:
            await self.metrics.stop()
        await self.agi.stop(self.config.general.shutdown_grace)
        await self.audiosocket.stop()
        await self.manager.close()
        await self.networks.close()
        if self.ami is not None:
            await self.ami.drain(self.config.general.shutdown_grace)  # the last calls' and OFFLINE events
            await self.ami.stop()
        self.call_media.close()
        await self.media.stop()
        self.loop_monitor.stop()
        self.history.close()
        self.store.close()
        log.info("stopped")


def with_ports(config: Config, agi: int, audiosocket: int) -> Config:
    """A copy of `config` listening on other ports (tests use 0: any free port)."""
    general = replace(config.general, values={**config.general.values, "port": agi})
    sockets = replace(config.audiosocket, values={**config.audiosocket.values, "port": audiosocket})
    return replace(config, general=general, audiosocket=sockets)
