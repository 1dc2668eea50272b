"""The Chinese of every field message our own code writes, keyed by the English sentence.

The English is the message id: the code that raises a message keeps writing it in English, and a
sentence missing here leaves in English rather than failing (tests/core/test_i18n.py finds every
message in the source and fails on one without an entry). ``{name}`` in a key stands for a variable
part (a number, a name); the Chinese may use it or leave it out. ``{sentence}`` stands for another
of these sentences, translated in turn.
"""

from __future__ import annotations

OWN_MESSAGES: dict[str, str] = {
    # core: cursors, dates, enums, rate policies, the JSON guard
    "is not a cursor this API gave out": "不是本接口给出的游标",
    "must read like '10/minute' or '10/minute;100/day'": "格式应为 '10/minute' 或 '10/minute;100/day'",
    "must be a date written as YYYY-MM-DD": "应为 YYYY-MM-DD 格式的日期",
    "must be one of the listed strings": "应为列出的取值之一",
    "must be valid Unicode text (it contains a lone surrogate code point)": (
        "应为有效的 Unicode 文本（含有孤立的代理码点）"
    ),
    "its keys must be valid Unicode text (one contains a lone surrogate code point)": (
        "键应为有效的 Unicode 文本（其中一个含有孤立的代理码点）"
    ),
    "must be an integer from {low} to {high}": "应为 {low} 到 {high} 之间的整数",
    "must be a finite number": "应为有限的数值",
    # admin: date ranges, statistics, staff-made accounts
    "must not be before from": "不能早于开始日期",
    "the range may span at most {days} days": "范围最多 {days} 天",
    "the range is at most {days} days": "范围最多 {days} 天",
    "is not a calendar date (YYYY-MM-DD)": "不是有效的日期（YYYY-MM-DD）",
    "is not a date and time this API can read": "不是可识别的日期时间",
    "must be between {low} and {high}": "应在 {low} 到 {high} 之间",
    "already registered": "已被注册",
    # auth (its code is another engineer's; the catalog holds its sentences all the same)
    "unknown scope {scope}": "未知的权限范围 {scope}",
    "a scope is named twice": "权限范围重复",
    "must be the account's own phone": "应为本账号绑定的手机号",
    "the account has no phone": "该账号未绑定手机号",
    "is required": "必填",
    "must be at least {count} characters": "至少 {count} 个字符",
    "must be at most {count} characters": "最多 {count} 个字符",
    "must contain both letters and digits": "应同时包含字母和数字",
    # zxcvbn's hint is English only: the Chinese says what to do instead.
    "is too easy to guess": "太容易被猜到，请换一个更复杂的密码",
    "is too easy to guess{hint}": "太容易被猜到，请换一个更复杂的密码",
    "must be a mainland China mobile number, e.g. 13812345678": "应为中国大陆手机号，例如 13812345678",
    "this account has no phone; use password or wechat_code": "该账号未绑定手机号，请使用密码或微信验证",
    "this account has no password": "该账号未设置密码",
    "this account is not a WeChat account": "该账号不是微信账号",
    "this account has never logged in through WeChat ({app})": "该账号从未通过微信（{app}）登录过",
    "not a login we started, or it expired; start the WeChat login again": (
        "不是本站发起的登录，或已过期，请重新微信登录"
    ),
    "this login was already finished; start the WeChat login again": "这次登录已经完成过，请重新微信登录",
    "send exactly one of code, password, wechat_code": "code、password、wechat_code 三者只能且必须提供一个",
    "this account has no password; set one first": "该账号未设置密码，请先设置密码",
    # billing: plans and quota
    "a membership needs period_days (at least 1)": "会员套餐需要 period_days（至少为 1）",
    "a quota pack has no period: null": "额度包没有有效期：应为 null",
    "must be after valid_from": "应晚于 valid_from",
    "no such feature: {names}": "不存在的功能：{names}",
    "no such plan": "套餐不存在",
    "a plan with this sku exists": "该 sku 的套餐已存在",
    "must not be 0": "不能为 0",
    "must be an ISO 8601 time with a zone": "应为带时区的 ISO 8601 时间",
    "must be between 2000 and 2100": "应在 2000 年到 2100 年之间",
    "must not be blank": "不能为空",
    "must not contain < or >, or control or invisible formatting characters": (
        "不能包含 < 或 >，也不能包含控制字符或不可见的格式字符"
    ),
    "must not be null (omit it to keep the current value)": "不能为 null（不传则保持原值）",
    # catalog: form schemas and pipelines (staff), and the form's own checks of a task's inputs
    'the top level must be {"type": "object", ...}': '顶层应为 {"type": "object", ...}',
    "additionalProperties must be false, so unknown inputs are refused": (
        "additionalProperties 应为 false，以拒绝未知输入"
    ),
    "already exists": "已存在",
    "{value} is not a reference ($inputs.<field> or $steps.<id>.<output>)": (
        "{value} 不是引用（$inputs.<field> 或 $steps.<id>.<output>）"
    ),
    "{value} must name a step output: $steps.<id>.<output>": "{value} 应指向某一步骤的输出：$steps.<id>.<output>",
    "step id {step} is used twice": "步骤 id {step} 重复",
    "step {step}: {sentence}": "步骤 {step}：{sentence}",
    "output {name} must refer to a step output, got {value}": "输出 {name} 应引用步骤的输出，实际为 {value}",
    "step {step} input {name} refers to {ref}, which has not run yet": (
        "步骤 {step} 的输入 {name} 引用了尚未运行的 {ref}"
    ),
    # distributors: ID card numbers
    "must be 18 characters": "应为 18 位",
    "must be 17 digits followed by a digit or X": "应为 17 位数字加一位数字或 X",
    "the region code is not valid": "地区码无效",
    "the birth date is not a date": "出生日期不是有效的日期",
    "the birth date is not plausible": "出生日期不合理",
    "the check character does not match": "校验位不正确",
    # moderation and tasks
    "content not allowed": "内容不合规",
    "no result of yours with this key (deleted, or expired)": "没有该 key 对应的结果（已删除或已过期）",
    "must be the key of your own upload or result": "应为你本人上传的文件或生成结果的 key",
    "not a verified upload: send the bytes, then complete it": "上传尚未校验：请先上传文件内容，再完成上传",
    "no uploaded object with this key": "没有该 key 对应的已上传文件",
    "the object changed since it was verified": "文件在校验后被修改过",
    "must be a time written as in RFC 3339, e.g. 2026-12-01T00:00:00Z": (
        "应为 RFC 3339 格式的时间，例如 2026-12-01T00:00:00Z"
    ),
    # providers (staff)
    "give either secret or secret_env, not both": "secret 与 secret_env 只能提供一个",
    "{provider} is not a provider that runs on accounts here": "{provider} 不是可配置账号的服务商",
    "give the secret, or secret_env naming the variable that holds it": (
        "请提供 secret，或用 secret_env 指明保存它的环境变量"
    ),
    "rate must read like '20/second' or '600/minute'": "rate 的格式应为 '20/second' 或 '600/minute'",
    "unknown provider {slug}": "未知的服务商 {slug}",
    "provider {slug} cannot run {kind} steps": "服务商 {slug} 不能运行 {kind} 类型的步骤",
    "provider {slug} has no action {action}": "服务商 {slug} 没有操作 {action}",
    "storing a secret needs WARDROBE_PROVIDER_SECRETS_KEY; use secret_env instead": (
        "保存密钥需要配置 WARDROBE_PROVIDER_SECRETS_KEY；请改用 secret_env"
    ),
    "WARDROBE_PROVIDER_SECRETS_KEY is not set": "未配置 WARDROBE_PROVIDER_SECRETS_KEY",
    "unknown sealed secret format": "无法识别的加密密钥格式",
    "the sealed secret does not open with this key and account": "加密密钥无法用当前密钥和账号解开",
    "secret_env must be an environment variable named {prefix}*": "secret_env 应为名为 {prefix}* 的环境变量",
    "endpoint must be an https:// URL": "endpoint 应为 https:// 地址",
    "endpoint must be a plain URL: scheme, host, optional port and path": (
        "endpoint 应为简单的 URL：协议、主机、可选端口和路径"
    ),
    "endpoint host {host} is not in WARDROBE_PROVIDER_ENDPOINT_HOSTS": (
        "endpoint 主机 {host} 不在 WARDROBE_PROVIDER_ENDPOINT_HOSTS 中"
    ),
    "{name} is not set in this process": "当前进程未设置 {name}",
    # storage
    "must be a plain file name (no path, control or invisible characters)": (
        "应为单纯的文件名（不含路径、控制字符或不可见字符）"
    ),
    "must be at most {count} bytes": "最多 {count} 字节",
    "upload with the presigned PUT of POST /api/v1/uploads": "请使用 POST /api/v1/uploads 返回的预签名 PUT 上传",
    "must be an object_key under your own uploads/": "应为你本人 uploads/ 下的 object_key",
    "the object changed while it was verified": "文件在校验过程中被修改",
    # users and account
    "must not contain < or >": "不能包含 < 或 >",
    "must not contain control or invisible formatting characters": "不能包含控制字符或不可见的格式字符",
    "must be an https URL": "应为 https 地址",
    "must be at most 512 characters": "最多 512 个字符",
    "must be between 1900-01-01 and today": "应在 1900-01-01 到今天之间",
    "unknown": "不存在",
    "cannot refer yourself": "不能邀请自己",
    "the referrer can only be set within {days} days of sign-up": "只能在注册后 {days} 天内设置邀请人",
    "cannot be null": "不能为 null",
    # webhooks
    "must be {schemes}://host/path, without credentials": "应为 {schemes}://host/path 形式，且不含账号密码",
    "must reach a public address": "应指向公网地址",
    "unknown event {name}": "未知的事件 {name}",
    "an event is named twice": "事件重复",
    "not a URL": "不是有效的 URL",
    # A task's inputs are checked against its feature's form by jsonschema: its sentences.
    "{value} is a required property": "缺少必填字段 {value}",
    "Additional properties are not allowed ({names} was unexpected)": "不允许的字段：{names}",
    "Additional properties are not allowed ({names} were unexpected)": "不允许的字段：{names}",
    "{value} is not of type {types}": "{value} 的类型应为 {types}",
    "{value} is not one of {options}": "{value} 不是可选值之一：{options}",
    "{value} was expected": "应为 {value}",
    "{value} is too short": "{value} 太短",
    "{value} is too long": "{value} 太长",
    "{value} should be non-empty": "不能为空",
    "{value} is expected to be empty": "应为空",
    "{value} is less than the minimum of {limit}": "{value} 小于最小值 {limit}",
    "{value} is greater than the maximum of {limit}": "{value} 大于最大值 {limit}",
    "{value} is less than or equal to the minimum of {limit}": "{value} 应大于 {limit}",
    "{value} is greater than or equal to the maximum of {limit}": "{value} 应小于 {limit}",
    "{value} is not a multiple of {step}": "{value} 不是 {step} 的倍数",
    "{value} does not match {pattern}": "{value} 不符合格式 {pattern}",
    "{value} is not a '{format}'": "{value} 不是有效的 '{format}'",
    "{value} has non-unique elements": "{value} 含有重复的元素",
}
