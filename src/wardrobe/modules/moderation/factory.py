"""A moderator from configuration values (the app passes its settings; see the README)."""

from __future__ import annotations

from collections.abc import Collection

from wardrobe.modules.moderation.keywords import KeywordList
from wardrobe.modules.moderation.moderator import Moderator
from wardrobe.modules.moderation.tencent import TencentImageModeration, TencentTextModeration
from wardrobe.modules.moderation.verdict import Purpose
from wardrobe.modules.storage.backend import ObjectStorage

BACKENDS = ("local", "tencent")


def build_moderator(
    *,
    backend: str = "local",
    storage: ObjectStorage | None = None,
    keywords_file: str | None = None,
    keywords: Collection[str | tuple[str, str]] = (),
    secret_id: str = "",
    secret_key: str = "",
    region: str = "ap-guangzhou",
    endpoint: str | None = None,
    scheme: str = "https",
    text_biz_type: str | None = None,
    image_biz_type: str | None = None,
    timeout: float = 5.0,
    review_blocks: Collection[str] = (Purpose.OUTPUT_IMAGE.value,),
    outage_attempts: int = 3,
    outage_backoff_seconds: float = 1.0,
) -> Moderator:
    """``backend``: ``local`` (keyword list only: embedded development, or no vendor contract) or
    ``tencent`` (keyword list, then TMS for text and IMS for images). The keyword list is the
    shipped default unless ``keywords_file`` names one; ``keywords`` are added to it."""
    if backend not in BACKENDS:
        raise ValueError(f"moderation backend must be one of {BACKENDS}")
    base = KeywordList.from_file(keywords_file) if keywords_file else KeywordList.default()
    word_list = KeywordList([*base.entries(), *keywords]) if keywords else base
    text = image = None
    if backend == "tencent":
        if not secret_id or not secret_key:
            raise ValueError("the tencent moderation backend needs a SecretId and SecretKey")
        text = TencentTextModeration(
            secret_id=secret_id,
            secret_key=secret_key,
            region=region,
            endpoint=endpoint,
            scheme=scheme,
            biz_type=text_biz_type,
            timeout=timeout,
        )
        image = TencentImageModeration(
            secret_id=secret_id,
            secret_key=secret_key,
            region=region,
            endpoint=endpoint,
            scheme=scheme,
            biz_type=image_biz_type,
            timeout=2 * timeout,  # images are larger and slower to check
        )
    return Moderator(
        keywords=word_list,
        text=text,
        image=image,
        storage=storage,
        review_blocks=[Purpose(p) for p in review_blocks],
        outage_attempts=outage_attempts,
        outage_backoff_seconds=outage_backoff_seconds,
    )
