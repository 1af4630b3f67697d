"""The checks of ``retrysafe vet``: Python ``ast`` only, the user's code is never imported."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RULES", "Finding", "check_source"]


@dataclass(frozen=True)
class Rule:
    code: str
    level: str  # "error" or "warning"
    title: str
    fix: str


RULES: dict[str, Rule] = {
    r.code: r
    for r in [
        Rule("RS001", "warning", "tool has no effect tag (treated as DESTRUCTIVE)",
             "tag it: @tool(effect=Effect.READ|WRITE|IDEMPOTENT|DESTRUCTIVE) or @effect(...)"),
        Rule("RS002", "error", "WRITE/DESTRUCTIVE tool without an idempotency key source",
             "wrap it in @idempotent or @tool, or take an idempotency_key parameter / use current_key()"),
        Rule("RS003", "error", "retry around a WRITE/DESTRUCTIVE tool without remote_idempotent=True",
             "retry only when the remote honours the key: with_retry(..., remote_idempotent=True); else do not retry"),
        Rule("RS004", "error", "result cache on a DESTRUCTIVE tool, or on a WRITE tool with no idempotency key",
             "do not cache side effects; use @idempotent (replays the recorded result) instead"),
        Rule("RS005", "warning", "idempotency scope with no session or tenant: one key for every session",
             "derive the scope from the session (f\"charge:{session_id}\") or use session(...)"),
        Rule("RS006", "error", "random UUID or the clock used as an idempotency key: no deduplication at all",
             "derive the key from the arguments: IdempKey.for_args(scope=..., args=...)"),
        Rule("RS007", "error", "READ tool calls a mutator (HTTP POST/PUT/PATCH/DELETE, commit, write SQL)",
             "tag it WRITE/IDEMPOTENT/DESTRUCTIVE, or move the mutation out of the read"),
        Rule("RS008", "warning", "blocking call inside an async tool",
             "use the async client (httpx.AsyncClient, anyio.sleep) or anyio.to_thread.run_sync"),
        Rule("RS009", "warning", "tool name is not snake_case, or the tool has no description",
             "name tools like get_weather and give them a docstring: the model reads both"),
        Rule("RS010", "error", "retrysafe decorator above a framework's tool decorator: the framework registers the unprotected function",
             "put the retrysafe decorator below (@mcp.tool / @agent.tool_plain / @function_tool on top, then @tool.write)"),
    ]
}  # fmt: skip

EFFECTS = {"READ", "WRITE", "IDEMPOTENT", "DESTRUCTIVE"}
TOOL_SHORTCUTS = {
    "read": "READ",
    "write": "WRITE",
    "idempotent": "IDEMPOTENT",
    "destructive": "DESTRUCTIVE",
}
# Decorators that make a function an agent tool, ours and the frameworks'.
TOOL_DECORATORS = {"tool", "function_tool", "ai_function", "kernel_function"}
RETRY_DECORATORS = {"retry", "on_exception", "with_retry", "retry_on_exception"}
CACHE_DECORATORS = {"cache_tool", "cached", "alru_cache", "cache", "lru_cache"}
MUTATING_HTTP = {"post", "put", "patch", "delete"}
HTTP_MODULES = {"requests", "httpx", "session", "client", "aiohttp"}
WRITE_SQL = re.compile(r"^\s*(INSERT|UPDATE|DELETE|DROP|ALTER|TRUNCATE|CREATE)\b", re.IGNORECASE)
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
IGNORE = re.compile(r"#\s*retrysafe:\s*ignore(?:\[([A-Z0-9, ]+)\])?")


@dataclass(frozen=True)
class Finding:
    """One finding: where, which rule, why, and the fix."""

    path: str
    line: int
    column: int
    code: str
    message: str

    @property
    def rule(self) -> Rule:
        return RULES[self.code]

    @property
    def level(self) -> str:
        return self.rule.level


def _name(node: ast.AST) -> str:
    """The dotted name of a call target or decorator (``a.b.c``), '' if not a name."""
    if isinstance(node, ast.Call):
        return _name(node.func)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _name(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _last(node: ast.AST) -> str:
    return _name(node).rsplit(".", 1)[-1]


def _kwarg(call: ast.AST, name: str) -> ast.expr | None:
    if isinstance(call, ast.Call):
        for kw in call.keywords:
            if kw.arg == name:
                return kw.value
    return None


def _effect_value(node: ast.AST | None) -> str | None:
    """READ/WRITE/... from Effect.X, "x", or None."""
    if node is None:
        return None
    if isinstance(node, ast.Attribute) and node.attr.upper() in EFFECTS:
        return node.attr.upper()
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.upper() in EFFECTS
    ):
        return node.value.upper()
    return None


def _truthy(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and bool(node.value)


@dataclass
class ToolInfo:
    node: ast.FunctionDef | ast.AsyncFunctionDef
    is_tool: bool
    effect: str | None
    retried: ast.AST | None
    retry_safe: bool
    cached: ast.AST | None
    idempotent: bool
    name_override: str | None
    description: bool


def _inspect_function(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ToolInfo:
    info = ToolInfo(
        fn, False, None, None, False, None, False, None, ast.get_docstring(fn) is not None
    )
    for dec in fn.decorator_list:
        full, last = _name(dec), _last(dec)
        parts = full.split(".")
        if last in TOOL_DECORATORS or (
            len(parts) >= 2 and parts[-2] == "tool" and last in TOOL_SHORTCUTS
        ):
            info.is_tool = True
            if last in TOOL_SHORTCUTS and parts[-2] == "tool":
                info.effect = TOOL_SHORTCUTS[last]
            info.effect = _effect_value(_kwarg(dec, "effect")) or info.effect
            if _truthy(_kwarg(dec, "remote_idempotent")):
                info.retry_safe = True
            name = _kwarg(dec, "name")
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                info.name_override = name.value
            if _kwarg(dec, "description") is not None:
                info.description = True
            # retrysafe's @tool (an effect= or a tool.<effect> shortcut) supplies keys and
            # records itself; a framework's @tool (LangChain, MCP) does not.
            if info.effect is not None:
                info.idempotent = True
        elif last == "effect" and isinstance(dec, ast.Call) and dec.args:
            info.effect = _effect_value(dec.args[0])
        elif last == "idempotent":
            info.idempotent = True
            info.effect = info.effect or _effect_value(_kwarg(dec, "effect"))
        elif last in RETRY_DECORATORS:
            info.retried = dec
            info.retry_safe = info.retry_safe or _truthy(_kwarg(dec, "remote_idempotent"))
        elif last in CACHE_DECORATORS:
            info.cached = dec
    return info


# A framework's tool decorator: `function_tool`, or `<receiver>.tool` / `.tool_plain` where
# the receiver is not retrysafe's `tool` (mcp.tool, server.tool, agent.tool_plain).
FRAMEWORK_TOOL_METHODS = {"tool", "tool_plain"}
RETRYSAFE_WRAPPERS = {"idempotent", "cache_tool"}


def _is_framework_tool(dec: ast.AST) -> bool:
    parts = _name(dec).split(".")
    if parts[-1] == "function_tool":
        return True
    return len(parts) >= 2 and parts[-1] in FRAMEWORK_TOOL_METHODS and parts[-2] != "tool"


def _is_retrysafe_wrapper(dec: ast.AST) -> bool:
    parts = _name(dec).split(".")
    if parts[-1] in RETRYSAFE_WRAPPERS:
        return True
    if len(parts) >= 2 and parts[-2] == "tool" and parts[-1] in TOOL_SHORTCUTS:
        return True
    return parts == ["tool"] and _kwarg(dec, "effect") is not None


def _uses_key(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    params = [a.arg for a in fn.args.args + fn.args.kwonlyargs]
    if "idempotency_key" in params:
        return True
    return any(
        isinstance(n, ast.Call) and _last(n) in ("current_key", "for_args") for n in ast.walk(fn)
    )


class _Checker:
    def __init__(self, path: str, source: str) -> None:
        self.path = path
        self.lines = source.splitlines()
        self.findings: list[Finding] = []

    def add(self, node: ast.AST, code: str, message: str | None = None) -> None:
        line = getattr(node, "lineno", 1)
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        match = IGNORE.search(text)
        if match and (
            match.group(1) is None or code in {c.strip() for c in match.group(1).split(",")}
        ):
            return
        self.findings.append(
            Finding(
                self.path,
                line,
                getattr(node, "col_offset", 0) + 1,
                code,
                message or RULES[code].title,
            )
        )

    def run(self, tree: ast.Module) -> list[Finding]:
        functions = [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        infos = {fn.name: _inspect_function(fn) for fn in functions}
        writes = {name for name, i in infos.items() if i.effect in ("WRITE", "DESTRUCTIVE")}
        for info in infos.values():
            self._function(info)
        self._calls(tree, infos, writes)
        return self.findings

    def _function(self, info: ToolInfo) -> None:
        fn = info.node
        decorators = fn.decorator_list
        for i, dec in enumerate(decorators):
            if _is_retrysafe_wrapper(dec) and any(map(_is_framework_tool, decorators[i + 1 :])):
                below = next(d for d in decorators[i + 1 :] if _is_framework_tool(d))
                self.add(
                    dec,
                    "RS010",
                    f"@{_name(dec)} is above @{_name(below)} on {fn.name!r}: the framework "
                    "registers the unprotected function; put it below",
                )
        tagged = info.effect is not None
        if info.is_tool and not tagged:
            self.add(fn, "RS001", f"tool {fn.name!r} has no effect tag (treated as DESTRUCTIVE)")
        if info.effect in ("WRITE", "DESTRUCTIVE"):
            if not info.idempotent and not _uses_key(fn):
                self.add(
                    fn, "RS002", f"{info.effect} tool {fn.name!r} has no idempotency key source"
                )
            if info.retried is not None and not info.retry_safe:
                self.add(
                    info.retried,
                    "RS003",
                    f"retry on {info.effect} tool {fn.name!r} without remote_idempotent=True",
                )
            if info.cached is not None and (info.effect == "DESTRUCTIVE" or not _uses_key(fn)):
                self.add(info.cached, "RS004", f"result cache on {info.effect} tool {fn.name!r}")
        if info.effect == "READ":
            for node in ast.walk(fn):
                if isinstance(node, ast.Call):
                    full, last = _name(node), _last(node)
                    base = full.split(".")[0].lower()
                    if last in MUTATING_HTTP and (
                        base in HTTP_MODULES or "client" in base or "session" in base
                    ):
                        self.add(node, "RS007", f"READ tool {fn.name!r} calls {full}()")
                    elif last == "commit":
                        self.add(node, "RS007", f"READ tool {fn.name!r} commits a transaction")
                    elif last in ("execute", "executemany") and node.args:
                        arg = node.args[0]
                        if (
                            isinstance(arg, ast.Constant)
                            and isinstance(arg.value, str)
                            and WRITE_SQL.match(arg.value)
                        ):
                            self.add(node, "RS007", f"READ tool {fn.name!r} runs write SQL")
        if isinstance(fn, ast.AsyncFunctionDef) and (info.is_tool or tagged):
            for node in ast.walk(fn):
                if isinstance(node, ast.Call):
                    full = _name(node)
                    if full == "time.sleep" or full.startswith("requests."):
                        self.add(node, "RS008", f"blocking {full}() inside async tool {fn.name!r}")
        if info.is_tool:
            name = info.name_override or fn.name
            if not SNAKE.match(name):
                self.add(fn, "RS009", f"tool name {name!r} is not snake_case")
            elif not info.description:
                self.add(fn, "RS009", f"tool {name!r} has no description (docstring)")

    def _calls(self, tree: ast.Module, infos: dict[str, ToolInfo], writes: set[str]) -> None:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            last = _last(node)
            # with_retry(write_tool) / tenacity.retry(...)(write_tool) without remote_idempotent
            if last in ("with_retry", "retry") and node.args:
                target = _last(node.args[0])
                if target in writes and not _truthy(_kwarg(node, "remote_idempotent")):
                    self.add(
                        node,
                        "RS003",
                        f"retry around {infos[target].effect} tool {target!r} without remote_idempotent=True",
                    )
            if (
                isinstance(node.func, ast.Call)
                and _last(node.func) in RETRY_DECORATORS
                and node.args
            ):
                target = _last(node.args[0])
                if target in writes and not _truthy(_kwarg(node.func, "remote_idempotent")):
                    self.add(node, "RS003", f"retry around {infos[target].effect} tool {target!r}")
            # scopes without a session
            if last == "for_args":
                scope = _kwarg(node, "scope")
                if isinstance(scope, ast.Constant):
                    self.add(node, "RS005")
            if last == "idempotent":
                scope = _kwarg(node, "scope")
                if isinstance(scope, ast.Constant) and not _mentions_session(tree):
                    self.add(node, "RS005")
            # random or clock keys
            key = _kwarg(node, "idempotency_key")
            if last == "explicit" and node.args:
                key = node.args[0]
            if key is not None and _random_or_clock(key):
                self.add(key, "RS006")
        # hand-written retry loops calling a write tool
        for loop in ast.walk(tree):
            if isinstance(loop, (ast.For, ast.While, ast.AsyncFor)):
                handlers = [n for n in ast.walk(loop) if isinstance(n, ast.Try)]
                if not handlers:
                    continue
                for call in ast.walk(loop):
                    if isinstance(call, ast.Call) and _last(call) in writes:
                        self.add(
                            call,
                            "RS003",
                            f"hand-written retry loop around {infos[_last(call)].effect} tool {_last(call)!r}",
                        )
                        break


def _mentions_session(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.Call) and _last(n) == "session" for n in ast.walk(tree))


def _random_or_clock(node: ast.AST) -> bool:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Call) and _last(inner) in (
            "uuid4",
            "uuid1",
            "time",
            "time_ns",
            "now",
            "utcnow",
            "random",
            "token_hex",
            "token_urlsafe",
        ):
            return True
    return False


def check_source(source: str, path: str = "<string>") -> list[Finding]:
    """Every finding in one module's source (a syntax error is reported as RS000)."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        return [
            Finding(path, exc.lineno or 1, exc.offset or 1, "RS000", f"cannot parse: {exc.msg}")
        ]
    return sorted(_Checker(path, source).run(tree), key=lambda f: (f.line, f.column, f.code))


RULES["RS000"] = Rule("RS000", "error", "file cannot be parsed", "fix the syntax error")


def iter_python_files(root: Path) -> list[Path]:
    """The .py files under ``root`` (or ``root`` itself), skipping virtualenvs and caches."""
    if root.is_file():
        return [root]
    skip = {
        ".venv",
        "venv",
        ".git",
        "__pycache__",
        "node_modules",
        "build",
        "dist",
        ".tox",
        "site-packages",
        "target",
    }
    return sorted(p for p in root.rglob("*.py") if not skip & set(p.parts))
