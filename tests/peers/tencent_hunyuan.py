"""The Hunyuan image service of the Tencent Cloud peer (hunyuan 2023-09-01, design/protocols.md §8).

``SubmitHunyuanImageJob`` accepts a job and ``QueryHunyuanImageJob`` reports it as ``"1"``
waiting, ``"2"`` running, ``"4"`` failed or ``"5"`` done. Tencent's documentation of both actions
says an account runs **one job at a time by default** and that a submitted job waits until the one
before it has finished (``上一个任务处理完毕后才能开始处理下一个任务``): a second submit is accepted and
stays ``"1"``. It documents no bound on that queue, so the peer has none unless a test sets
``max_queued``; past it a submit is refused with ``FailedOperation.EngineServerLimitExceeded``
(``引擎层请求超过限额；请稍后重试``), the service's "over the engine's limit" error.

Jobs move only when the test lets them: with ``auto`` (the default) each query answers the job's
current state and then moves it one step (``"1"`` → ``"2"`` when a slot is free, ``"2"`` → done),
so a poller sees 1, 2, 5; without ``auto`` the test calls ``advance``. A prompt containing
"unsafe" ends in ``"4"`` with ``OperationDenied.ImageIllegalDetected``; a content image URL
containing "unsafe" is refused at submit with the same code. ``ResultImage`` URLs point at the
peer itself and answer 404 an hour (peer clock) after the job finished, like Tencent's.

The peer's lock is held by the caller of every ``submit``/``query`` and taken by the test hooks.
"""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from PIL import Image

HUNYUAN_VERSION = "2023-09-01"
HUNYUAN_REGIONS = frozenset({"ap-guangzhou"})  # the service exists in Guangzhou only
RESULT_TTL_SECONDS = 3600
RESULT_PATH_PREFIX = "/hunyuan/results"
MAX_PROMPT_CHARS = 1024
RESOLUTIONS = frozenset(
    {"768:768", "768:1024", "1024:768", "1024:1024", "720:1280", "1280:720", "768:1280", "1280:768"}
)
# With a content image only the four square-ish sizes are accepted.
CONTENT_IMAGE_RESOLUTIONS = frozenset({"768:768", "768:1024", "1024:768", "1024:1024"})

WAITING, RUNNING, FAILED, DONE = "1", "2", "4", "5"
_STATUS_MESSAGES = {WAITING: "排队中", RUNNING: "处理中", FAILED: "处理失败", DONE: "处理完成"}
_ILLEGAL = "OperationDenied.ImageIllegalDetected"
_JOB_ERROR_MESSAGES = {
    _ILLEGAL: "图片可能包含敏感信息，请重试",
    "FailedOperation.GenerateImageFailed": "图片包含敏感内容",
}

RaiseError = Callable[[str, str], Exception]


@cache
def result_png() -> bytes:
    """A small real PNG, the same for every result."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 120, 40)).save(out, format="PNG")
    return out.getvalue()


@dataclass
class HunyuanJob:
    job_id: str
    account: str
    host: str
    prompt: str
    params: dict[str, Any]
    submitted_at: float
    state: str = WAITING
    started_at: float | None = None
    finished_at: float | None = None
    error_code: str = ""
    image_count: int = 1
    revised_prompt: str = ""

    @property
    def finished(self) -> bool:
        return self.state in (FAILED, DONE)


@dataclass
class HunyuanService:
    """Jobs per account (a SecretId stands for one account) and the counters tests read."""

    clock: Callable[[], float]
    error: RaiseError
    lock: threading.Lock
    concurrency: int = 1
    max_queued: int | None = None
    auto: bool = True
    jobs: dict[str, HunyuanJob] = field(default_factory=dict)
    submits: int = 0
    queries: int = 0
    # Most jobs in "2" at once, and most unfinished (submitted, not yet terminal) jobs at once.
    peak_running: int = 0
    peak_unfinished: int = 0
    _failures_next: list[str] = field(default_factory=list)

    # -- test hooks ----------------------------------------------------------------------------

    def fail_next_job(self, code: str = "FailedOperation.GenerateImageFailed") -> None:
        """The next submitted job ends in ``"4"`` with ``code`` as its JobErrorCode."""
        with self.lock:
            self._failures_next.append(code)

    def advance(self, job_id: str) -> str:
        """Move a job one step (``"1"`` → ``"2"`` needs a free slot); returns its new state."""
        with self.lock:
            job = self.jobs[job_id]
            if job.state == WAITING:
                self._fill_slots(job.account)
                if job.state == WAITING:
                    raise RuntimeError(f"job {job_id} is queued behind another running job")
            elif job.state == RUNNING:
                self._finish(job)
                self._fill_slots(job.account)
            return job.state

    def job_states(self) -> dict[str, str]:
        with self.lock:
            return {job_id: job.state for job_id, job in self.jobs.items()}

    # -- actions (called under the lock) -------------------------------------------------------

    def submit(self, account: str, host: str, params: dict[str, Any]) -> dict[str, Any]:
        prompt = params.get("Prompt")
        if prompt is None:
            raise self.error("MissingParameter", "The parameter `Prompt` is missing.")
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
            raise self._bad_value("Prompt must be 1 to 1024 characters.")
        negative = params.get("NegativePrompt")
        if negative is not None and (not isinstance(negative, str) or len(negative) > MAX_PROMPT_CHARS):
            raise self._bad_value("NegativePrompt must be at most 1024 characters.")
        style = params.get("Style")
        if style is not None and not isinstance(style, str):
            raise self._bad_value("Style must be a string.")
        content_image = self._content_image(params.get("ContentImage"))
        resolution = params.get("Resolution")
        allowed = CONTENT_IMAGE_RESOLUTIONS if content_image else RESOLUTIONS
        if resolution is not None and resolution not in allowed:
            raise self._bad_value("Resolution is not supported.")
        num = params.get("Num", 1)
        if not isinstance(num, int) or isinstance(num, bool) or not 1 <= num <= 4:
            raise self._bad_value("Num must be 1 to 4.")
        if params.get("Clarity") not in (None, "x2", "x4"):
            raise self._bad_value("Clarity must be x2 or x4.")
        seed = params.get("Seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise self._bad_value("Seed must be a non-negative integer.")
        for name in ("Revise", "LogoAdd"):
            if params.get(name) is not None and not isinstance(params.get(name), int):
                raise self._bad_value(f"{name} must be an integer.")
        if content_image and "unsafe" in content_image:
            raise self.error(_ILLEGAL, _JOB_ERROR_MESSAGES[_ILLEGAL])
        unfinished = self._unfinished(account)
        if self.max_queued is not None and unfinished >= self.concurrency + self.max_queued:
            raise self.error("FailedOperation.EngineServerLimitExceeded", "引擎层请求超过限额；请稍后重试。")
        self.submits += 1
        # Tencent's job ids are opaque strings: "<appid>-<uuid>" in the wild.
        job = HunyuanJob(
            job_id=f"1300000000-{uuid.uuid4()}",
            account=account,
            host=host,
            prompt=prompt,
            params=dict(params),
            submitted_at=self.clock(),
            image_count=num,
            # Revise (prompt expansion) is on unless turned off, and forced on with an image.
            revised_prompt=prompt if params.get("Revise") == 0 and not content_image else f"{prompt}，细节丰富，高清",
        )
        if self._failures_next:
            job.error_code = self._failures_next.pop(0)
        elif "unsafe" in prompt:
            job.error_code = _ILLEGAL
        self.jobs[job.job_id] = job
        self.peak_unfinished = max(self.peak_unfinished, unfinished + 1)
        return {"JobId": job.job_id}

    def query(self, account: str, params: dict[str, Any]) -> dict[str, Any]:
        job_id = params.get("JobId")
        if not isinstance(job_id, str) or not job_id:
            raise self.error("MissingParameter", "The parameter `JobId` is missing.")
        job = self.jobs.get(job_id)
        if job is None or job.account != account:
            raise self.error("ResourceNotFound", "The job does not exist.")
        self.queries += 1
        answer = self._describe(job)
        if self.auto:
            if job.state == RUNNING:
                self._finish(job)
            self._fill_slots(account)
        return answer

    def result_image(self, job_id: str, index: int) -> bytes | None:
        """The PNG behind a ResultImage URL, or None (404) if unknown or expired."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.state != DONE or job.finished_at is None:
                return None
            if not 0 <= index < job.image_count or self.clock() - job.finished_at >= RESULT_TTL_SECONDS:
                return None
            return result_png()

    # -- internals -----------------------------------------------------------------------------

    def _bad_value(self, message: str) -> Exception:
        return self.error("InvalidParameterValue.ParameterValueError", message)

    def _content_image(self, value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._bad_value("ContentImage must be an object.")
        url, data = value.get("ImageUrl"), value.get("ImageBase64")
        if (url is None) == (data is None):
            raise self._bad_value("ContentImage needs exactly one of ImageUrl and ImageBase64.")
        if url is not None:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise self.error("FailedOperation.ImageDownloadError", "The content image could not be downloaded.")
            return url
        if not isinstance(data, str) or not data:
            raise self._bad_value("ImageBase64 must be a non-empty string.")
        return "base64"

    def _unfinished(self, account: str) -> int:
        return sum(1 for job in self.jobs.values() if job.account == account and not job.finished)

    def _fill_slots(self, account: str) -> None:
        """Start waiting jobs of ``account`` in submission order while slots are free."""
        mine = [job for job in self.jobs.values() if job.account == account]
        running = sum(1 for job in mine if job.state == RUNNING)
        for job in mine:  # dicts keep insertion order: oldest first
            if running >= self.concurrency:
                break
            if job.state == WAITING:
                job.state = RUNNING
                job.started_at = self.clock()
                running += 1
        self.peak_running = max(self.peak_running, running)

    def _finish(self, job: HunyuanJob) -> None:
        job.state = FAILED if job.error_code else DONE
        job.finished_at = self.clock()

    def _describe(self, job: HunyuanJob) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "JobStatusCode": job.state,
            "JobStatusMsg": _STATUS_MESSAGES[job.state],
            "JobErrorCode": "",
            "JobErrorMsg": "",
            "ResultImage": [],
            "ResultDetails": [],
            "RevisedPrompt": [],
        }
        if job.state == FAILED:
            answer["JobErrorCode"] = job.error_code
            answer["JobErrorMsg"] = _JOB_ERROR_MESSAGES.get(job.error_code, "处理失败")
        elif job.state == DONE:
            answer["ResultImage"] = [
                f"http://{job.host}{RESULT_PATH_PREFIX}/{job.job_id}/{index}.png" for index in range(job.image_count)
            ]
            answer["ResultDetails"] = ["Success"] * job.image_count
            answer["RevisedPrompt"] = [job.revised_prompt]
        return answer
