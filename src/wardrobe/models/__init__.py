"""ORM models, imported together so Alembic sees the whole schema."""

from wardrobe.models.api_keys import ApiKey
from wardrobe.models.auth import AuthSession, RefreshToken, SmsCode, UserTotp
from wardrobe.models.base import Base
from wardrobe.models.billing import (
    HoldStatus,
    LedgerEntry,
    LedgerKind,
    Plan,
    PlanKind,
    QuotaAccount,
    QuotaHold,
)
from wardrobe.models.catalog import FeatureDefinition, FormSchema, PipelineSchema
from wardrobe.models.distributors import ApplicationStatus, DistributorApplication
from wardrobe.models.payments import (
    Order,
    OrderStatus,
    PaymentChannel,
    PaymentNotification,
    Refund,
    RefundStatus,
)
from wardrobe.models.providers import ProviderAccount, ProviderSwitch, VendorCallback
from wardrobe.models.scheduler import SchedulerRun
from wardrobe.models.stats import (
    StatsDaily,
    StatsDailyActiveUser,
    StatsDailyRevenue,
    StatsDailyTasks,
    stats_daily_performance,
)
from wardrobe.models.storage import PendingObjectDeletion, VerifiedUpload
from wardrobe.models.tasks import OutboxMessage, StepStatus, Task, TaskStatus, TaskStep
from wardrobe.models.users import (
    AuditLog,
    Gender,
    InviteCodePool,
    Referral,
    Role,
    User,
    UserStatus,
    WeChatAccount,
    WeChatApp,
)
from wardrobe.models.webhooks import WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "ApplicationStatus",
    "AuditLog",
    "AuthSession",
    "Base",
    "DistributorApplication",
    "FeatureDefinition",
    "FormSchema",
    "Gender",
    "HoldStatus",
    "InviteCodePool",
    "LedgerEntry",
    "LedgerKind",
    "Order",
    "OrderStatus",
    "OutboxMessage",
    "PaymentChannel",
    "PaymentNotification",
    "PendingObjectDeletion",
    "PipelineSchema",
    "Plan",
    "PlanKind",
    "ProviderAccount",
    "ProviderSwitch",
    "QuotaAccount",
    "QuotaHold",
    "Referral",
    "RefreshToken",
    "Refund",
    "RefundStatus",
    "Role",
    "SchedulerRun",
    "SmsCode",
    "StatsDaily",
    "StatsDailyActiveUser",
    "StatsDailyRevenue",
    "StatsDailyTasks",
    "StepStatus",
    "Task",
    "TaskStatus",
    "TaskStep",
    "User",
    "UserStatus",
    "UserTotp",
    "VendorCallback",
    "VerifiedUpload",
    "WeChatAccount",
    "WeChatApp",
    "WebhookDelivery",
    "WebhookEndpoint",
    "stats_daily_performance",
]
