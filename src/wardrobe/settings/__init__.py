"""Typed configuration from the environment (prefix ``WARDROBE_``).

Every variable is listed with its meaning in ``.env.example``. With no configuration at all the
service runs embedded: SQLite under ``var/``, in-process cache, limiter and queue, console SMS.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import ip_network
from pathlib import Path
from typing import Any, Literal, Self

from limits import parse_many
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from wardrobe.settings import _production
from wardrobe.settings._values import (
    DEFAULT_CALLBACK_SECRET,
    DEFAULT_CODE_PEPPER,
    DEFAULT_JWT_SECRET,
    DEFAULT_STORAGE_SIGNING_KEY,
    DEFAULT_WEBHOOK_SECRET_KEY,
    Environment,
    SmsBackend,
    parse_backup_key,
    parse_provider_secrets_key,
)

__all__ = [
    "DEFAULT_CALLBACK_SECRET",
    "DEFAULT_CODE_PEPPER",
    "DEFAULT_JWT_SECRET",
    "DEFAULT_STORAGE_SIGNING_KEY",
    "Environment",
    "Settings",
    "SmsBackend",
    "get_settings",
    "parse_backup_key",
    "parse_provider_secrets_key",
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WARDROBE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Environment.DEVELOPMENT
    debug: bool = False
    var_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # `serve --workers N`: process i also listens on socketio_port_base + i (0 = port + 1 + i), and
    # names itself socketio_node (set per process by the supervisor). Engine.IO sessions live in
    # one process's memory; nginx routes a session's requests to its process by that name, which
    # prefixes every session id (deploy/nginx, `wardrobe nginx-config`).
    socketio_port_base: int = Field(default=0, ge=0, le=65535)
    socketio_node: str = Field(default="", pattern=r"^[a-z0-9]{0,16}$")
    log_level: str = "INFO"
    log_json: bool = True
    # OpenTelemetry: traces go to this OTLP/HTTP collector (e.g. http://collector:4318); "" = off.
    otel_endpoint: str = Field(default="", pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$")
    # Of the traces that start here (a request without a sampled traceparent), the share kept.
    otel_sample_ratio: float = Field(default=1.0, ge=0, le=1)

    # Database: SQLite (aiosqlite), MySQL/MariaDB (asyncmy) or PostgreSQL (asyncpg).
    database_url: str = ""
    db_pool_size: int = 10
    db_max_overflow: int = 20
    db_pool_timeout: float = 10.0
    db_pool_recycle: int = 1800
    db_pool_pre_ping: bool = True
    # ...but only a connection that sat idle this long: a busy pool's connections were just used,
    # and pinging each costs a round trip per checkout. 0 = ping on every checkout.
    db_pool_ping_after_idle_seconds: float = Field(default=5.0, ge=0, le=3600)
    db_echo: bool = False
    auto_migrate: bool = True
    seed_demo_data: bool = True

    # Redis: empty means embedded (in-process) cache, limiter and pub/sub.
    redis_url: str = ""
    redis_max_connections: int = 256
    redis_pool_timeout: float = 5.0
    redis_key_prefix: str = "wardrobe"

    # Cache-aside of the catalog, pipelines, plans and memberships: in each process's memory,
    # dropped in every process when an operator edits (Redis pub/sub). Lifetimes vary by ±jitter.
    cache_ttl_seconds: float = Field(default=60.0, gt=0)
    cache_negative_ttl_seconds: float = Field(default=10.0, gt=0)
    cache_ttl_jitter: float = Field(default=0.1, ge=0, lt=1)

    # HTTP edge
    max_body_bytes: int = 1_048_576
    cors_origins: list[str] = Field(default_factory=list)
    # Proxies (addresses or CIDRs) whose X-Forwarded-For is believed; empty = the socket peer is
    # the client. Behind nginx on the same host: ["127.0.0.1", "::1"].
    trusted_proxies: list[str] = Field(default_factory=list)

    # Rate limits at the edge, in the `limits` notation ("100/minute;2000/hour"); "" = none.
    rate_limits_enabled: bool = True
    rate_limit_per_ip: str = "6000/minute"  # every request of one client address
    rate_limit_per_user: str = "1200/minute"  # every request with one user's token
    rate_limit_auth: str = "60/minute"  # /api/v1/auth/* per client address (fails closed)
    rate_limit_task_create: str = "60/minute"  # POST /api/v1/tasks per user (fails closed)
    rate_limit_write: str = "600/minute"  # other writes per user (per address if anonymous)

    # Tokens
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    # Rotation: the secrets signed with before, still accepted on the tokens they signed until those
    # expire (one access-token lifetime after the switch, then drop them). JSON list.
    jwt_previous_secrets: list[SecretStr] = []
    jwt_issuer: str = "wardrobe"
    jwt_audience: str = "wardrobe-api"
    access_token_ttl_seconds: int = 900
    # A refresh token unused this long ends its session (the idle limit)...
    refresh_token_ttl_seconds: int = 7 * 24 * 3600
    # ...and no session outlives this many days from its login, however often it refreshes.
    session_max_days: int = Field(default=30, ge=1, le=3650)

    # Live sockets (Socket.IO): connects per client address and per user ("" = no window), and
    # how many sockets one user may hold at once across every process.
    socket_connect_limit_per_ip: str = "60/minute"
    socket_connect_limit_per_user: str = "30/minute"
    sockets_per_user: int = Field(default=10, ge=1, le=1000)
    # How often an API process re-reads the provider views while one of its staff sockets follows
    # them (subscribe_providers); a change is pushed at the next read.
    socket_provider_push_seconds: float = Field(default=2.0, ge=0.1, le=60)
    # permessage-deflate on the sockets' websockets. Off by default: each socket that negotiates it
    # (browsers and most clients do) holds a zlib compressor and decompressor, ~40 KiB, and every
    # event is compressed once per socket; the events are small JSON documents.
    socket_compression: bool = False

    # SMS codes and their limits
    sms_backend: SmsBackend = SmsBackend.CONSOLE
    sms_code_pepper: SecretStr = SecretStr(DEFAULT_CODE_PEPPER)
    sms_code_ttl_seconds: int = 300
    sms_code_max_attempts: int = 5
    sms_cooldown_seconds: int = 60
    sms_daily_cap_per_phone: int = 10
    sms_hourly_cap_per_ip: int = 20
    sms_daily_cap_per_ip: int = 100
    sms_debug_codes: bool = True
    tencent_secret_id: str = ""
    tencent_secret_key: SecretStr = SecretStr("")
    tencent_region: str = "ap-guangzhou"
    tencent_sms_endpoint: str = ""
    tencent_sms_scheme: str = "https"
    tencent_sms_sdk_app_id: str = ""
    tencent_sms_sign_name: str = ""
    tencent_sms_template_id: str = ""
    # Notice to a number an account was moved away from: one variable, the new number masked.
    tencent_sms_phone_changed_template_id: str = ""

    # Captcha before SMS: once a risk rule's window is full, POST /api/v1/auth/sms-codes answers
    # CAPTCHA_REQUIRED until the client sends a Tencent Cloud Captcha ticket, checked with
    # DescribeCaptchaResult (on the Tencent Cloud credentials above). Rules are windows in the
    # `limits` notation over the SMS codes sent per client address, per phone prefix and per
    # device (X-Device-Id); "" turns a rule off. A rule only ever asks for a captcha, never blocks.
    captcha_enabled: bool = False
    captcha_app_id: int = Field(default=0, ge=0)  # CaptchaAppId of the captcha app the clients show
    captcha_app_secret_key: SecretStr = SecretStr("")  # its AppSecretKey (server side only)
    captcha_endpoint: str = ""  # "" = captcha.tencentcloudapi.com
    captcha_scheme: str = "https"
    captcha_timeout_seconds: float = Field(default=5.0, gt=0)
    captcha_rule_per_ip: str = "5/hour;20/day"
    captcha_rule_per_phone_prefix: str = "10/hour;50/day"
    captcha_rule_per_device: str = "3/hour;10/day"
    captcha_phone_prefix_digits: int = Field(default=7, ge=3, le=11)  # 7: carrier block and area

    # Password login back-off: attempts per account from one client address (progressive
    # windows), and a much higher ceiling per account from every address together, so a stranger's
    # guesses do not lock the owner out while a spread-out guesser is still bounded.
    login_failure_limits: str = "5/minute;10/hour;20/day"
    login_failure_limits_per_account: str = "100/hour;300/day"
    # Password logins from one client address, whatever the account (a sweep over many accounts).
    login_limit_per_ip: str = "30/minute"
    # Admins must have opened their session with a TOTP code before any staff route answers them
    # (403 TOTP_ENROLMENT_REQUIRED otherwise). None = true in production, false elsewhere.
    admin_totp_required: bool | None = None

    # WeChat mini program
    wechat_appid: str = ""
    wechat_secret: SecretStr = SecretStr("")
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_timeout_seconds: float = 5.0
    # WeChat Open Platform apps, each with its own appid and secret: the website app (QR login) and
    # the mobile app. Bound to the same Open Platform account as the mini program, they give the
    # same unionid, so one person is one account on every client.
    wechat_web_appid: str = ""
    wechat_web_secret: SecretStr = SecretStr("")
    # Where WeChat sends the browser back after the scan: the web app, on the domain registered for
    # the website app (e.g. https://www.example.com/app/).
    wechat_web_redirect_uri: str = ""
    wechat_open_base: str = "https://open.weixin.qq.com"
    wechat_mobile_appid: str = ""
    wechat_mobile_secret: SecretStr = SecretStr("")

    # Invite codes
    invite_code_length: int = 8
    invite_pool_target: int = 200

    # Billing
    free_grant_quota: int = 10
    referral_reward_quota: int = 5
    quota_hold_ttl_seconds: int = 6 * 3600

    # Tasks and workers
    worker_in_process: bool | None = None
    worker_concurrency: int = 8
    task_lease_seconds: float = 30.0
    task_heartbeat_seconds: float = 10.0
    task_reap_interval_seconds: float = 15.0
    task_requeue_after_seconds: float = 300.0
    extra_providers: list[str] = Field(default_factory=list)
    # On SIGTERM: in-flight requests and task runs get this long to finish; runs still going are
    # then interrupted and handed back to the other workers.
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    provider_concurrency: dict[str, int] = Field(default_factory=lambda: {"local": 2})
    # Provider slug -> request rate windows in the `limits` notation ("5/second;300/minute"), shared
    # by every worker through Redis; absent = unlimited.
    provider_rate_limits: dict[str, str] = Field(default_factory=dict)
    # Tasks of one user running at once; the rest wait in the queue. 0 = no limit.
    user_max_running_tasks: int = Field(default=3, ge=0)
    # `wardrobe scheduler`: how often it looks for due jobs, and the lease of its leader lock in
    # Redis (renewed every third of it; a standby takes over at most 4/3 of it after the leader dies).
    scheduler_tick_seconds: float = Field(default=60.0, gt=0)
    scheduler_lease_seconds: float = Field(default=30.0, ge=0.3, le=3600)

    # API keys a user may have live at once (business customers' systems; core/api_keys.py).
    api_keys_per_user: int = Field(default=10, ge=1, le=100)
    # Webhooks (modules/webhooks): the key every endpoint's signing secret is derived from (refused
    # in production as the default), how many endpoints a user may register, how long a delivery is
    # retried (then the endpoint, failing all that time, is disabled), the waits between attempts,
    # the available quota at or below which `quota.low` is sent, and host:port pairs a webhook may
    # reach although they are not public (internal systems, the tests' receivers).
    webhook_secret_key: SecretStr = SecretStr(DEFAULT_WEBHOOK_SECRET_KEY)
    webhook_endpoints_per_user: int = Field(default=10, ge=1, le=100)
    webhook_retry_hours: float = Field(default=24.0, gt=0, le=72)
    webhook_retry_seconds: list[float] = Field(default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0])
    webhook_quota_low: int = Field(default=5, ge=0)
    webhook_allow_private: list[str] = Field(default_factory=list)

    # Payments ---------------------------------------------------------------------------
    # Public base URL the platforms call back (https://api.example.com); notify paths are appended.
    payment_notify_base_url: str = ""
    order_ttl_minutes: int = Field(default=30, ge=5, le=24 * 60)
    # Pending orders older than this are asked about by the reconciliation job.
    reconcile_after_minutes: int = Field(default=5, ge=1)
    # The referrer's share of the quota an invitee buys, in percent (0 = no rebate).
    referral_rebate_percent: int = Field(default=10, ge=0, le=100)
    wechatpay_mchid: str = ""
    wechatpay_appid: str = ""  # the mini program (JSAPI) and Native app id
    wechatpay_cert_serial: str = ""
    wechatpay_private_key: SecretStr = SecretStr("")  # PEM text, or a path to the PEM file
    wechatpay_apiv3_key: SecretStr = SecretStr("")
    wechatpay_public_key: SecretStr = SecretStr("")  # WeChat Pay public key (PEM text or path)
    wechatpay_public_key_id: str = ""
    wechatpay_api_base: str = "https://api.mch.weixin.qq.com"
    alipay_app_id: str = ""
    alipay_private_key: SecretStr = SecretStr("")  # app private key: PEM, bare base64, or a path
    alipay_public_key: SecretStr = SecretStr("")  # Alipay's public key: PEM, bare base64, or a path
    alipay_seller_id: str = ""  # the merchant PID notifications must name
    alipay_gateway: str = "https://openapi.alipay.com/gateway.do"
    alipay_return_url: str = ""
    payment_timeout_seconds: float = 10.0
    # The `sandbox` payment channel (modules/payments/sandbox.py): purchases complete on a checkout
    # page of this service, through the real notification path. Unset: on in development only.
    # Production refuses to start with it on.
    payment_sandbox: bool | None = None
    # --- end of Payments -------------------------------------------------------------

    # AI vendors --------------------------------------------------------------------------
    # Public base URL vendors call back (https://api.example.com); /api/v1/callbacks/... is appended.
    vendor_callback_base_url: str = ""
    # Signs the step reference in every callback URL we hand a vendor (RunningHub signs nothing).
    vendor_callback_secret: SecretStr = SecretStr(DEFAULT_CALLBACK_SECRET)  # refused in production
    vendor_timeout_seconds: float = 30.0
    # Provider accounts edited by operators: the key sealing their secrets at rest
    # (base64 of 32 random bytes; "" = secrets only by environment variable name), and the hosts
    # their endpoints may point at (".example.com" allows its subdomains).
    provider_secrets_key: SecretStr = SecretStr("")
    provider_endpoint_hosts: list[str] = Field(
        default_factory=lambda: ["www.runninghub.cn", "www.runninghub.ai", ".tencentcloudapi.com"]
    )
    runninghub_base_url: str = "https://www.runninghub.cn"
    runninghub_api_key: SecretStr = SecretStr("")  # "" = RunningHub not configured
    # Action -> workflow: {"outfit_change": {"kind": "workflow", "id": "1950...", "nodes":
    # {"person": ["12", "image"], "garment": ["27", "image"]}, "uploads": ["person", "garment"]}}
    runninghub_workflows: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Tencent Hunyuan image jobs, on the Tencent Cloud credentials above (TENCENT_SECRET_ID/KEY).
    hunyuan_enabled: bool = False
    hunyuan_region: str = "ap-guangzhou"  # the only region Hunyuan image jobs run in
    hunyuan_endpoint: str = ""  # "" = hunyuan.tencentcloudapi.com
    hunyuan_scheme: str = "https"
    # Tencent Cloud imaging (aiart: inpainting, outpainting, refine), on the same credentials.
    tencent_imaging_enabled: bool = False
    tencent_imaging_region: str = "ap-guangzhou"
    tencent_imaging_endpoint: str = ""  # "" = aiart.tencentcloudapi.com
    tencent_imaging_scheme: str = "https"
    # Tencent SCF: cloud functions invoked asynchronously that call back with an HMAC-signed result.
    scf_enabled: bool = False
    scf_region: str = "ap-guangzhou"
    scf_endpoint: str = ""  # "" = scf.tencentcloudapi.com
    scf_scheme: str = "https"
    # Action -> function: {"restore": "photo-restore"} or {"restore": {"name": ..., "namespace": ...,
    # "qualifier": ..., "image_inputs": ["image"]}}
    scf_functions: dict[str, Any] = Field(default_factory=dict)
    scf_callback_key: SecretStr = SecretStr("")  # shared with the functions; signs their results
    # Content moderation: "local" = the keyword list only; "tencent" = the list, then
    # TMS for prompts and IMS for images (on the Tencent Cloud credentials above).
    moderation_backend: Literal["local", "tencent"] = "local"
    moderation_keywords_file: str = ""  # "" = the shipped default list
    moderation_region: str = "ap-guangzhou"
    moderation_endpoint: str = ""  # "" = tms./ims.tencentcloudapi.com (leave empty in production)
    moderation_scheme: str = "https"
    moderation_text_biz_type: str = ""
    moderation_image_biz_type: str = ""
    moderation_timeout_seconds: float = 5.0  # images get twice this
    # Purposes where a "review" verdict blocks (prompt, input_image, output_image).
    moderation_review_blocks: list[str] = Field(default_factory=lambda: ["output_image"])
    moderation_outage_attempts: int = Field(default=3, ge=1)
    moderation_outage_backoff_seconds: float = Field(default=1.0, ge=0)
    # Vendor outputs are copied into our storage (public internet only: SSRF-safe, bounded).
    vendor_output_max_bytes: int = 32 * 1024 * 1024
    vendor_output_timeout_seconds: float = 60.0
    # host:port pairs outputs may be fetched from although not public (an operator's own gateway).
    vendor_output_allow_private: list[str] = Field(default_factory=list)
    # --- end of AI vendors ----------------------------------------------------------------------

    # Storage ----------------------------------------------------------------------------
    storage_backend: Literal["local", "s3"] = "local"  # s3 = any S3-compatible store, Tencent COS included
    storage_local_root: Path = Path("var/objects")
    storage_public_base_url: str = ""  # "" = relative URLs (/api/v1/storage/objects/...)
    storage_signing_key: SecretStr = SecretStr(DEFAULT_STORAGE_SIGNING_KEY)  # local backend; refused in production
    # S3 API (COS: endpoint https://cos.<region>.myqcloud.com, bucket <name>-<appid>).
    storage_s3_endpoint_url: str = ""  # "" = AWS S3 for the region
    storage_s3_region: str = ""
    storage_s3_bucket: str = ""
    storage_s3_access_key_id: str = ""
    storage_s3_secret_access_key: SecretStr = SecretStr("")
    storage_s3_session_token: SecretStr = SecretStr("")  # only with temporary (STS) credentials
    storage_s3_addressing_style: Literal["virtual", "path"] = "virtual"  # path: MinIO, moto and the like
    # Send If-None-Match: * on create-only writes (atomic on AWS S3, MinIO); off for stores that refuse it.
    storage_s3_conditional_put: bool = True
    # Orphan cleanup: uploads and results nothing references, older than this, are deleted by
    # the scheduler every interval (and by `wardrobe storage gc`).
    storage_gc_grace_days: float = Field(default=7.0, gt=0)
    storage_gc_interval_hours: float = Field(default=24.0, gt=0)
    # Retention: a finished task's uploads and results, and uploads no task uses, are deleted this
    # many days after the task finished (or the upload arrived); 0 keeps them forever.
    retention_days: int = Field(default=30, ge=0, le=36500)
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    # Memory one image may take once decoded (all frames; Pillow keeps a colour pixel in 4 bytes):
    # 128 MiB is a 32 MP colour photo. Checked from the header, before decoding.
    max_image_decode_bytes: int = Field(default=128 * 1024 * 1024, gt=0)
    upload_url_ttl_seconds: int = 900
    download_url_ttl_seconds: int = 3600
    upload_rate_limits: str = "60/hour"
    # Direct upload credentials: with COS behind the s3 backend, temporary keys from STS
    # GetFederationToken (WARDROBE_TENCENT_SECRET_ID/KEY) that may only write under uploads/{user}/.
    storage_sts_enabled: bool = False
    storage_sts_region: str = ""  # "" = WARDROBE_STORAGE_S3_REGION
    storage_sts_endpoint: str = ""  # "" = sts.tencentcloudapi.com
    storage_sts_scheme: str = "https"
    storage_sts_appid: str = ""  # the COS APPID of the policy's resource; "" = the bucket's -<appid> suffix
    storage_sts_duration_seconds: int = Field(default=1800, ge=600, le=1800)
    storage_sts_timeout_seconds: float = Field(default=5.0, gt=0)
    # --- end of Storage -----------------------------------------------------------------

    # Envelope encryption of ID numbers ----------------------------------------------------
    # "local" = master keys in a key file (development; refused in production), "tencent" = KMS.
    kms_backend: Literal["local", "tencent"] = "local"
    kms_local_key_file: Path = Path("var/master-keys.json")  # created with one key on first use
    kms_key_id: str = ""  # the KMS KeyId data keys are generated under (on the Tencent credentials above)
    kms_region: str = "ap-guangzhou"
    kms_endpoint: str = ""  # "" = kms.tencentcloudapi.com
    kms_scheme: str = "https"
    kms_timeout_seconds: float = Field(default=5.0, gt=0)
    # --- end of envelope encryption ---------------------------------------------------------------

    # Backups (`wardrobe backup`): archives go to backup_dir ("" = var/backups); --encrypt seals
    # them under backup_encryption_key (base64 of 32 random bytes, kept off this machine);
    # --upload puts them in backup_bucket under backup_prefix, on the storage S3 endpoint and keys.
    backup_dir: Path = Path("var/backups")
    backup_encryption_key: SecretStr = SecretStr("")
    backup_bucket: str = ""
    backup_prefix: str = "backups/"

    # Passwords
    password_min_length: int = Field(default=8, ge=8, le=1024)
    password_max_length: int = Field(default=128, ge=64, le=1024)
    # zxcvbn's score a new password needs (0-4; 3 = about 10^8 guesses): see modules/auth/passwords.py
    password_min_score: int = Field(default=3, ge=0, le=4)

    # /metrics answers only `Authorization: Bearer <this>` (compared in constant time). Empty: open
    # in development and tests (the quick start shows it), 404 in production (which refuses to
    # start without it anyway).
    metrics_token: SecretStr = SecretStr("")
    # `wardrobe worker` and `wardrobe scheduler` serve GET /metrics and GET /health here (same token
    # rule as the API's /metrics). Port 0 = no server: tests start many workers at once.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Statements slower than this many milliseconds are logged (`slow_query`, with a fingerprint,
    # never the parameters) and counted in wardrobe_db_slow_queries_total; 0 = off.
    slow_query_ms: float = Field(default=500.0, ge=0)

    # Demo data (embedded mode only)
    demo_operator_phone: str = "13800000000"
    demo_operator_password: SecretStr = SecretStr("wardrobe-demo-1")

    @field_validator("provider_rate_limits")
    @classmethod
    def _rate_specs_parse(cls, value: dict[str, str]) -> dict[str, str]:
        for slug, spec in value.items():
            try:
                parse_many(spec)
            except ValueError as exc:
                raise ValueError(f"provider_rate_limits[{slug!r}]: {exc}") from exc
        return value

    @field_validator(
        "rate_limit_per_ip",
        "rate_limit_per_user",
        "rate_limit_auth",
        "rate_limit_task_create",
        "rate_limit_write",
        "socket_connect_limit_per_ip",
        "socket_connect_limit_per_user",
        "login_failure_limits",
        "login_failure_limits_per_account",
        "login_limit_per_ip",
        "captcha_rule_per_ip",
        "captcha_rule_per_phone_prefix",
        "captcha_rule_per_device",
    )
    @classmethod
    def _edge_spec_parses(cls, value: str) -> str:
        if value:
            parse_many(value)  # a ValueError names the bad part
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: list[str]) -> list[str]:
        for entry in value:
            ip_network(entry.strip(), strict=False)
        return value

    @field_validator("backup_encryption_key")
    @classmethod
    def _backup_key_is_32_bytes(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            parse_backup_key(value.get_secret_value())
        return value

    @field_validator("provider_secrets_key")
    @classmethod
    def _secrets_key_is_32_bytes(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            parse_provider_secrets_key(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _defaults_and_production_guard(self) -> Self:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.var_dir / 'wardrobe.db'}"
        if "storage_local_root" not in self.model_fields_set:
            self.storage_local_root = self.var_dir / "objects"
        if "backup_dir" not in self.model_fields_set:
            self.backup_dir = self.var_dir / "backups"
        if "kms_local_key_file" not in self.model_fields_set:
            self.kms_local_key_file = self.var_dir / "master-keys.json"
        if self.storage_sts_enabled:
            if self.storage_backend != "s3":
                raise ValueError("WARDROBE_STORAGE_STS_ENABLED needs WARDROBE_STORAGE_BACKEND=s3 (Tencent COS)")
            if not self.cos_appid:
                raise ValueError(
                    "WARDROBE_STORAGE_STS_ENABLED needs WARDROBE_STORAGE_STS_APPID or a bucket named <name>-<appid>"
                )
        if self.captcha_enabled and not (
            self.captcha_app_id
            and self.captcha_app_secret_key.get_secret_value()
            and self.tencent_secret_id
            and self.tencent_secret_key.get_secret_value()
        ):
            raise ValueError(
                "WARDROBE_CAPTCHA_ENABLED needs WARDROBE_CAPTCHA_APP_ID, WARDROBE_CAPTCHA_APP_SECRET_KEY "
                "and WARDROBE_TENCENT_SECRET_ID/_SECRET_KEY"
            )
        if self.env is Environment.PRODUCTION:
            problems = self.production_problems()
            if problems:
                raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    def production_problems(self) -> list[str]:
        """Insecure defaults that production must not run with."""
        return _production.problems(self)

    def production_warnings(self) -> list[str]:
        """Choices production may run with but should not, logged when the API starts."""
        return _production.warnings(self)

    @property
    def cos_appid(self) -> str:
        """The APPID STS policies name: configured, or the digits a COS bucket name ends with."""
        if self.storage_sts_appid:
            return self.storage_sts_appid
        _, dash, suffix = self.storage_s3_bucket.rpartition("-")
        return suffix if dash and suffix.isdigit() else ""

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: everything shared lives in this process."""
        return not self.redis_url

    @property
    def runs_worker_in_process(self) -> bool:
        """The API process also executes tasks: by default only when embedded."""
        return self.embedded if self.worker_in_process is None else self.worker_in_process

    @property
    def admin_totp_enforced(self) -> bool:
        """Whether admins need a session opened with TOTP for staff routes (read per request)."""
        if self.admin_totp_required is None:
            return self.env is Environment.PRODUCTION
        return self.admin_totp_required

    @property
    def sandbox_payments_enabled(self) -> bool:
        if self.env is Environment.PRODUCTION:
            return False
        return self.env is Environment.DEVELOPMENT if self.payment_sandbox is None else self.payment_sandbox

    @property
    def debug_codes_enabled(self) -> bool:
        return self.sms_debug_codes and self.sms_backend is SmsBackend.CONSOLE


@lru_cache
def get_settings() -> Settings:
    return Settings()
