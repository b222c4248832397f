"""Detectors: one per module, each a small unit with the protocol of `base.Detector`."""

from kabuguard.detectors.campaign import Campaign
from kabuguard.detectors.credential_stuffing import CredentialStuffing
from kabuguard.detectors.device_reputation import DeviceReputation
from kabuguard.detectors.dormant_reactivation import DormantReactivation
from kabuguard.detectors.failed_login_burst import FailedLoginBurst
from kabuguard.detectors.holdings_liquidation import HoldingsLiquidation
from kabuguard.detectors.hosting_network import HostingNetwork
from kabuguard.detectors.impossible_travel import ImpossibleTravel
from kabuguard.detectors.ip_reputation import IpReputation
from kabuguard.detectors.login_profile import LoginProfile
from kabuguard.detectors.market_factor import MarketFactor
from kabuguard.detectors.owner_session import OwnerSession
from kabuguard.detectors.owners_crowd import OwnersCrowd
from kabuguard.detectors.pump_surveillance import PumpSurveillance
from kabuguard.detectors.sensitive_change import SensitiveChange
from kabuguard.detectors.session_risk import SessionRisk
from kabuguard.detectors.shared_device import SharedDevice
from kabuguard.detectors.shared_indicator import SharedIndicatorDevice, SharedIndicatorIp, SharedIndicatorNetwork
from kabuguard.detectors.shared_ip import SharedIp
from kabuguard.detectors.suspect_flow import SuspectFlow
from kabuguard.detectors.takeover_wave import TakeoverWave
from kabuguard.detectors.thin_stock_buy import ThinStockBuy
from kabuguard.detectors.unusual_trading import UnusualTrading

# In stage order; within a stage, scoring order does not matter (findings only add up).
ALL = (
    LoginProfile, HostingNetwork, ImpossibleTravel, FailedLoginBurst, DormantReactivation,
    HoldingsLiquidation, UnusualTrading,
    SharedIp, SharedDevice, CredentialStuffing, IpReputation, DeviceReputation,
    SharedIndicatorIp, SharedIndicatorDevice, SharedIndicatorNetwork, TakeoverWave,
    MarketFactor,
    ThinStockBuy, Campaign, PumpSurveillance, SuspectFlow, OwnersCrowd,
    SessionRisk, SensitiveChange, OwnerSession,
)
