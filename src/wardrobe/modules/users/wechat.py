"""One person, one account, on every WeChat client: the mini program, the website (QR login) and
the mobile app each give the user a different openid, and the unionid that WeChat gives all three
(when they are bound to one Open Platform account) joins them.

A login finds its user by the app's openid, then by the unionid. A returning user whose identity is
already on record costs reads only. Otherwise what is new (the account itself, or a first login
from another app) is written in a short transaction of its own, committed before the login goes on:

- Each identity column is unique (``users.wechat_openid`` and every column of ``wechat_accounts``),
  so two first logins of one person racing on two clients cannot both create an account: the loser
  fails on a unique key, its transaction (with its new user, free grant and ledger entry) rolls back
  whole, and it looks again and joins the winner.
- InnoDB answers some of those races with a deadlock instead (three inserts waiting on one key
  whose first holder rolls back): the victim's whole transaction is gone, so it is simply run
  again. Its own transaction is what makes that retry possible; the request's is left untouched.
"""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from wardrobe.core.db import unit_of_work
from wardrobe.core.errors import AppError, ErrorCode
from wardrobe.core.logging import get_logger
from wardrobe.models import User, WeChatAccount, WeChatApp
from wardrobe.modules.users.service import SignupPolicy, create_user

log = get_logger(__name__)
_ATTEMPTS = 3


class _LostRace(Exception):
    """Another login created or linked the same identity first."""


# Where the website's and the mobile app's openids live (the mini program's is users.wechat_openid).
_ROW_FIELD = {WeChatApp.WEB: "web_openid", WeChatApp.MOBILE: "app_openid"}


def _held_openid(user: User, row: WeChatAccount | None, app: WeChatApp) -> str | None:
    """The openid ``user`` has on record for ``app``, if any."""
    if app is WeChatApp.MINIPROGRAM:
        return user.wechat_openid
    return None if row is None else getattr(row, _ROW_FIELD[app])


async def find_user(session: AsyncSession, app: WeChatApp, openid: str, unionid: str | None) -> User | None:
    if app is WeChatApp.MINIPROGRAM:
        user = await session.scalar(select(User).where(User.wechat_openid == openid))
    else:
        column = getattr(WeChatAccount, _ROW_FIELD[app])
        user = await session.scalar(
            select(User).join(WeChatAccount, WeChatAccount.user_id == User.id).where(column == openid)
        )
    if user is not None or unionid is None:
        return user
    user = await session.scalar(
        select(User).join(WeChatAccount, WeChatAccount.user_id == User.id).where(WeChatAccount.unionid == unionid)
    )
    if user is None:
        # An account the mini program made before any other app was configured keeps its unionid on
        # the user row only.
        user = await session.scalar(select(User).where(User.wechat_unionid == unionid).order_by(User.id).limit(1))
    return user


async def openid_of(session: AsyncSession, user: User, app: WeChatApp) -> str | None:
    """The user's openid in ``app``, if the user ever logged in through it."""
    if app is WeChatApp.MINIPROGRAM:
        return user.wechat_openid
    return _held_openid(user, await _account_row(session, user.id), app)


def _record(
    user: User, row: WeChatAccount | None, app: WeChatApp, openid: str, unionid: str | None
) -> WeChatAccount | None:
    """Put the identity on ``user`` (and its ``wechat_accounts`` row, made when needed); returns a
    new row to add, if any."""
    if unionid and not user.wechat_unionid:
        user.wechat_unionid = unionid
    if app is WeChatApp.MINIPROGRAM:
        if user.wechat_openid != openid:
            user.wechat_openid = openid
        if not unionid:
            return None
    new = None
    if row is None:
        row = new = WeChatAccount(user_id=user.id)
    if unionid and row.unionid is None:
        row.unionid = unionid
    if app is not WeChatApp.MINIPROGRAM and getattr(row, _ROW_FIELD[app]) != openid:
        setattr(row, _ROW_FIELD[app], openid)
    return new


async def link(session: AsyncSession, user: User, app: WeChatApp, openid: str, unionid: str | None) -> bool:
    """Put this WeChat identity on ``user``; False when it is another account's, or the user
    already holds another WeChat user of that app or platform. Unique columns settle a race."""
    other = await find_user(session, app, openid, unionid)
    if other is not None and other.id != user.id:
        return False
    row = await _account_row(session, user.id)
    held = _held_openid(user, row, app)
    known_union = user.wechat_unionid or (row.unionid if row is not None else None)
    if (held is not None and held != openid) or (unionid and known_union and known_union != unionid):
        return False
    try:
        async with session.begin_nested():
            new = _record(user, row, app, openid, unionid)
            if new is not None:
                session.add(new)
            await session.flush()
    except IntegrityError:
        return False
    return True


def _needs_writing(user: User, row: WeChatAccount | None, app: WeChatApp, openid: str, unionid: str | None) -> bool:
    if unionid and (not user.wechat_unionid or row is None or row.unionid is None):
        return True
    return _held_openid(user, row, app) != openid


async def _account_row(session: AsyncSession, user_id: int) -> WeChatAccount | None:
    return await session.scalar(select(WeChatAccount).where(WeChatAccount.user_id == user_id))


async def _find_or_create(
    session: AsyncSession,
    app: WeChatApp,
    openid: str,
    unionid: str | None,
    policy: SignupPolicy,
    referrer_id: int | None,
) -> tuple[int, bool]:
    """In the writer's own transaction: the user's id, and whether it was created."""
    user = await find_user(session, app, openid, unionid)
    created = user is None
    if user is None:
        referrer = await session.get(User, referrer_id) if referrer_id is not None else None
        user = await create_user(
            session,
            openid=openid if app is WeChatApp.MINIPROGRAM else None,
            unionid=unionid,
            policy=policy,
            referrer=referrer,
        )
        if user is None:
            raise _LostRace
    new = _record(user, None if created else await _account_row(session, user.id), app, openid, unionid)
    if new is not None:
        session.add(new)
    await session.flush()
    return user.id, created


def _lock_conflict(exc: DBAPIError) -> bool:
    """InnoDB's deadlock victim (1213) or lock wait timeout (1205), or the missing savepoint (1305)
    that a deadlock inside one leaves behind: the transaction is gone and may run again."""
    args: tuple[object, ...] = tuple(getattr(exc.orig, "args", ()))
    return bool(args) and args[0] in (1205, 1213, 1305)


async def get_or_create(
    session: AsyncSession,
    factory: async_sessionmaker[AsyncSession],
    app: WeChatApp,
    openid: str,
    unionid: str | None,
    *,
    policy: SignupPolicy,
    referrer: User | None = None,
) -> tuple[User, bool]:
    """The account of this WeChat user (found by openid, else by unionid), made on first login.
    ``session`` is the request's (read here, and the user returned is in it); ``factory`` makes the
    writer's own transaction."""
    user = await find_user(session, app, openid, unionid)
    if user is not None and not _needs_writing(user, await _account_row(session, user.id), app, openid, unionid):
        return user, False
    for _ in range(_ATTEMPTS):
        try:
            async with unit_of_work(factory) as own:
                user_id, created = await _find_or_create(
                    own, app, openid, unionid, policy, referrer.id if referrer else None
                )
        except (IntegrityError, _LostRace):
            continue
        except DBAPIError as exc:
            if not _lock_conflict(exc):
                raise
            await asyncio.sleep(random.uniform(0, 0.05))  # noqa: S311 - jitter, not a secret
            continue
        found = await session.get(User, user_id, populate_existing=True)
        if found is None:  # erased between the two transactions
            break
        if created:
            log.info("wechat_account_created", user_id=user_id, app=app.value, unionid_known=unionid is not None)
        return found, created
    raise AppError(ErrorCode.CONFLICT, detail="wechat identity insert kept conflicting")
