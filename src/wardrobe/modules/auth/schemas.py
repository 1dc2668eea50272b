"""Auth DTOs: requests validated at the edge, responses as in api.md."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from fastapi import Header
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from wardrobe.core.openapi import server_check
from wardrobe.core.schemas import EnumValue, InputModel
from wardrobe.models import WeChatApp
from wardrobe.modules.auth.passwords import MIN_PASSWORD_LENGTH, check_strength
from wardrobe.modules.auth.phone import Phone
from wardrobe.modules.auth.reauth import Proof
from wardrobe.modules.auth.sms_codes import ACCOUNT_PURPOSES, CodePurpose
from wardrobe.modules.auth.sms_risk import DEVICE_ID_PATTERN, CaptchaTicket
from wardrobe.modules.users.schemas import UserOut

NewPassword = Annotated[
    str,
    Field(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=1024,
        json_schema_extra=server_check(
            "between WARDROBE_PASSWORD_MIN_LENGTH (8) and WARDROBE_PASSWORD_MAX_LENGTH (128) characters, letters "
            "and digits, and hard to guess: a zxcvbn score of at least WARDROBE_PASSWORD_MIN_SCORE (3)"
        ),
    ),
    AfterValidator(check_strength),
]
# A proof of identity only works where the account has that kind of credential.
PROOF_FITS_ACCOUNT = "only a kind of proof the account has: a phone, a password or a WeChat login"
# Which WeChat app a proof's ``wechat_code`` comes from.
WeChatAppOfCode = Annotated[
    EnumValue[WeChatApp],
    Field(
        description="Which WeChat app `wechat_code` comes from: `miniprogram` (wx.login), `web` (a QR "
        "login's code) or `app` (the mobile OpenSDK)"
    ),
]
SmsCode = Annotated[str, Field(pattern=r"^[0-9]{6}$", examples=["123456"])]
TotpCode = Annotated[
    str, Field(pattern=r"^[0-9]{6}$", examples=["492039"], description="The code the authenticator app shows now")
]
# On every login method: what an account with TOTP enabled must add (401 TOTP_REQUIRED without it).
LoginTotpCode = Annotated[
    TotpCode | None,
    Field(
        description="The authenticator app's current code; required when the account has TOTP enabled "
        "(401 `TOTP_REQUIRED` without it, `TOTP_INVALID` when wrong or already used)"
    ),
]
InviteCode = Annotated[str, Field(min_length=4, max_length=20, examples=["7K3M9QXD"])]


class SmsCodeRequest(InputModel):
    model_config = ConfigDict(
        extra="forbid",
        # `phone` is required unless the purpose is one whose code goes to the account's own phone.
        json_schema_extra={
            "anyOf": [
                {"required": ["phone"], "properties": {"phone": {"type": "string"}}},
                {
                    "required": ["purpose"],
                    "properties": {"purpose": {"enum": [str(p.value) for p in sorted(ACCOUNT_PURPOSES)]}},
                },
            ]
        },
    )

    phone: Phone | None = Field(
        default=None,
        examples=["13812345678"],
        description="Required, except for `change_phone`, `delete_account` and `create_api_key`: those codes go to the "
        "logged-in account's own phone (send the bearer token; a phone given must be that one)",
        json_schema_extra=server_check(
            "for `change_phone`, `delete_account` and `create_api_key`, the account's own phone"
        ),
    )
    purpose: EnumValue[CodePurpose] = CodePurpose.LOGIN
    captcha: CaptchaTicket | None = Field(
        default=None, description="Tencent Captcha result; needed after an answer CAPTCHA_REQUIRED"
    )


DeviceIdHeader = Annotated[
    str | None,
    Header(
        alias="X-Device-Id",
        pattern=DEVICE_ID_PATTERN,
        description="A stable id of the client device (captcha risk rules count SMS codes per device)",
    ),
]


class SmsCodeSent(BaseModel):
    cooldown_seconds: int
    debug_code: str | None = Field(default=None, description="Only with the console sender in development")


class SmsLogin(InputModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["sms"]
    phone: Phone = Field(examples=["13812345678"])
    code: SmsCode
    invite_code: InviteCode | None = None
    totp_code: LoginTotpCode = None


class PasswordLogin(InputModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["password"]
    phone: Phone = Field(examples=["13812345678"])
    # Not checked for strength here: a login only compares; the cap keeps hashing bounded.
    password: str = Field(min_length=1, max_length=1024)
    totp_code: LoginTotpCode = None


class _WeChatCodeLogin(InputModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        min_length=1,
        max_length=128,
        description="The code WeChat gave: `wx.login()` in the mini program, the QR login's redirect on the "
        "web, the OpenSDK's SendAuth answer in the app",
    )
    invite_code: InviteCode | None = None
    totp_code: LoginTotpCode = None


class WeChatLogin(_WeChatCodeLogin):
    method: Literal["wechat"]


class WeChatWebLogin(_WeChatCodeLogin):
    method: Literal["wechat_web"]
    state: str = Field(
        min_length=1,
        max_length=128,
        description="The `state` on the same redirect: the one `GET /api/v1/auth/wechat/web/authorize` gave",
        json_schema_extra=server_check("a state this service issued in the last 10 minutes, used once"),
    )


class WeChatAppLogin(_WeChatCodeLogin):
    method: Literal["wechat_app"]


LoginRequest = Annotated[
    SmsLogin | PasswordLogin | WeChatLogin | WeChatWebLogin | WeChatAppLogin, Field(discriminator="method")
]


class LoginMethods(BaseModel):
    """What this deployment offers, so a login page shows only what works."""

    sms: bool = Field(description="Always true")
    password: bool = Field(description="Always true (for accounts that set one)")
    wechat_miniprogram: bool = Field(description="`method: wechat` with a `wx.login` code")
    wechat_web: bool = Field(description="`method: wechat_web`: QR login through `/wechat/web/authorize`")
    wechat_app: bool = Field(description="`method: wechat_app` with the mobile OpenSDK's code")


class WeChatAuthorize(BaseModel):
    url: str = Field(description="Send the browser here (WeChat's QR page); it comes back with code and state")
    state: str = Field(description="Keep it (sessionStorage) and refuse a callback that carries another")
    redirect_uri: str
    expires_in: int = Field(description="Seconds the state stays usable")


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int
    refresh_expires_in: int


class LoginResponse(TokenResponse):
    is_new_user: bool
    user: UserOut


class RefreshRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=512)


class PasswordReset(InputModel):
    model_config = ConfigDict(extra="forbid")

    phone: Phone
    code: SmsCode
    new_password: NewPassword


class PasswordChange(InputModel):
    model_config = ConfigDict(extra="forbid")

    old_password: str | None = Field(default=None, max_length=1024)
    new_password: NewPassword


class PasswordChanged(BaseModel):
    other_sessions_revoked: int


class PhoneProofFields(InputModel):
    """Proof that the caller holds the account now (beyond the access token): one of a code sent
    to its current phone (purpose `change_phone`), its password, or a fresh `wx.login` code."""

    current_code: SmsCode | None = Field(
        default=None,
        description="Code sent to the current phone (change_phone)",
        json_schema_extra=server_check(PROOF_FITS_ACCOUNT),
    )
    password: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="The account's password",
        json_schema_extra=server_check(PROOF_FITS_ACCOUNT),
    )
    wechat_code: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="A fresh WeChat code of the account's WeChat user (see `wechat_app`)",
        json_schema_extra=server_check(PROOF_FITS_ACCOUNT),
    )
    wechat_app: WeChatAppOfCode = WeChatApp.MINIPROGRAM

    def proof(self) -> Proof:
        return Proof(
            self.current_code, self.password, self.wechat_code, code_field="current_code", wechat_app=self.wechat_app
        )


class PhoneBindSms(PhoneProofFields):
    model_config = ConfigDict(extra="forbid")

    phone: Phone
    code: SmsCode = Field(description="Code sent to the new phone (purpose bind_phone)")


class PhoneBindWeChat(PhoneProofFields):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=128, description="getPhoneNumber code")


class SessionOut(BaseModel):
    id: str = Field(description="The session's id (the `sid` of its access tokens)")
    device: str | None = Field(description="From the User-Agent, e.g. `WeChat mini program on iOS (iPhone)`")
    client: str | None = Field(description="The User-Agent at login, cut to 128 characters")
    method: str = Field(description="How it logged in: sms, password or wechat")
    ip_masked: str | None = Field(description="The last address it was used from, masked (`203.0.113.*`)")
    created_at: datetime
    last_used_at: datetime = Field(description="Its login or its last refresh")
    expires_at: datetime = Field(description="When it ends at the latest, however often it refreshes")
    current: bool = Field(description="Whether this is the session making the request")
    mfa: bool = Field(description="Whether it was opened with a TOTP code (or TOTP was enabled in it)")


class LoggedOut(BaseModel):
    sessions_revoked: int


class TotpSetupRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=1024, description="The account's password (fresh proof)")


class TotpCodeRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    code: TotpCode


class TotpSecret(BaseModel):
    secret: str = Field(description="Base32 secret for manual entry; shown only here, once")
    otpauth_uri: str = Field(
        description="`otpauth://totp/Wardrobe:<masked phone>?secret=…&issuer=Wardrobe`, to show as a QR code"
    )


class TotpState(BaseModel):
    enabled: bool
    other_sessions_revoked: int = Field(description="Sessions of the account ended by the change")


_PROOFS = ("code", "password", "wechat_code")


class FreshProof(InputModel):
    """Proof that the caller holds the account now, beyond the access token (``reauth.py``): exactly
    one of an SMS code sent to the account's phone (the purpose names the change), the password,
    or — for an account with neither — a fresh ``wx.login`` code of the same WeChat user."""

    model_config = ConfigDict(
        extra="forbid",
        # Exactly one of them is a string (the others absent or null).
        json_schema_extra={
            "oneOf": [{"required": [name], "properties": {name: {"type": "string"}}} for name in _PROOFS]
        },
    )

    code: str | None = Field(
        default=None, pattern=r"^[0-9]{6}$", examples=["123456"], json_schema_extra=server_check(PROOF_FITS_ACCOUNT)
    )
    password: str | None = Field(
        default=None, min_length=1, max_length=1024, json_schema_extra=server_check(PROOF_FITS_ACCOUNT)
    )
    wechat_code: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="a fresh WeChat code of the account's WeChat user (see `wechat_app`)",
        json_schema_extra=server_check(PROOF_FITS_ACCOUNT),
    )
    wechat_app: WeChatAppOfCode = WeChatApp.MINIPROGRAM

    def proof(self) -> Proof:
        return Proof(self.code, self.password, self.wechat_code, wechat_app=self.wechat_app)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in _PROOFS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("send exactly one of code, password, wechat_code")
        return self


class WeChatLinkRequest(FreshProof):
    """Link a WeChat user to this account: the code of the WeChat user to link, and one proof that
    the caller holds the account now (an SMS code for `link_wechat`, the password, or a code of a
    WeChat user the account already has)."""

    link_code: str = Field(
        min_length=1, max_length=128, description="The WeChat code of the user to link (as a login's `code`)"
    )
    link_app: EnumValue[WeChatApp] = Field(
        default=WeChatApp.MINIPROGRAM, description="Which app `link_code` comes from"
    )
    state: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="With `link_app` `web`: the QR login's state, as for `method: wechat_web`",
        json_schema_extra=server_check("with link_app web: a state this service issued, used once"),
    )


class WeChatLinked(BaseModel):
    app: WeChatApp = Field(description="The app whose WeChat user is now linked")
