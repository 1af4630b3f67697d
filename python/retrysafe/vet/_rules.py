"""The checks of ``retrysafe vet``: Python ``ast`` only, the user's code is never imported."""

from __future__ import annotations

import ast
import re
import threading
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
TOOL_DECORATORS = {"tool", "tool_plain", "function_tool", "ai_function", "kernel_function"}
# Calls that hand plain functions to a framework as tools: the keyword ``tools=`` anywhere
# (pydantic-ai's and openai-agents' ``Agent``, LangGraph's ``create_react_agent``), and these
# calls' first argument (a list, or one function).
TOOL_LIST_CALLS = {"bind_tools", "ToolNode", "create_react_agent"}
TOOL_WRAPPING_CALLS = {
    "function_tool",
    "from_function",
    "add_tool",
    "Tool",
    "FunctionTool",
    "StructuredTool",
}
# LangChain's `tool(fn)`: a call of the bare name (a method named `tool` is something else).
BARE_TOOL_CALL = "tool"
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


#: ``ast.walk`` of each node walked during one ``check_source``, per thread (the rules walk
#: the module and each function several times; a walk is most of vet's time). Its lists keep
#: the module's nodes alive until the check ends, so no id is reused meanwhile.
_WALKED = threading.local()


def _walk(node: ast.AST) -> list[ast.AST]:
    """``list(ast.walk(node))``, once per node per checked module."""
    walked: dict[int, list[ast.AST]] = _WALKED.__dict__.setdefault("lists", {})
    found = walked.get(id(node))
    if found is None:
        found = walked[id(node)] = list(ast.walk(node))
    return found


def _last(node: ast.AST) -> str:
    return _name(node).rsplit(".", 1)[-1]


def _makes_http_client(node: ast.AST | None) -> bool:
    """``httpx.AsyncClient()``, ``requests.Session()``, ``aiohttp.ClientSession()``..."""
    if not isinstance(node, ast.Call):
        return False
    full = _name(node)
    lowered = full.lower()
    return full.split(".")[0] in HTTP_MODULES or "client" in lowered or "session" in lowered


def _http_receivers(fn: ast.AST) -> set[str]:
    """The names a function binds to an HTTP client: ``with httpx.Client() as c``, ``async
    with httpx.AsyncClient() as c``, ``c = requests.Session()``."""
    names: set[str] = set()
    for node in _walk(fn):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if isinstance(item.optional_vars, ast.Name) and _makes_http_client(
                    item.context_expr
                ):
                    names.add(item.optional_vars.id)
        elif isinstance(node, ast.Assign) and _makes_http_client(node.value):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


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
            info.effect = (
                _effect_value(_kwarg(dec, "effect"))
                or _mcp_effect(_kwarg(dec, "annotations"))
                or info.effect
            )
            if _truthy(_kwarg(dec, "remote_idempotent")):
                info.retry_safe = True
            name = _kwarg(dec, "name")
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                info.name_override = name.value
            if _kwarg(dec, "description") is not None:
                info.description = True
            # retrysafe's @tool (an effect= or a tool.<effect> shortcut) supplies keys and
            # records itself; a framework's @tool (LangChain, MCP) does not, whatever its
            # annotations say.
            if info.effect is not None and not _is_framework_tool(dec):
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


def _mcp_effect(node: ast.AST | None) -> str | None:
    """The effect MCP annotations describe (``ToolAnnotations(readOnlyHint=True, ...)`` or a
    dict literal), with MCP's defaults for hints left out; None when not readable."""
    hints: dict[str, bool] = {}
    if isinstance(node, ast.Call) and _last(node) == "ToolAnnotations":
        pairs = [(kw.arg, kw.value) for kw in node.keywords if kw.arg]
    elif isinstance(node, ast.Dict):
        pairs = [
            (k.value, v)
            for k, v in zip(node.keys, node.values, strict=True)
            if isinstance(k, ast.Constant) and isinstance(k.value, str)
        ]
    else:
        return None
    for name, value in pairs:
        if isinstance(value, ast.Constant) and isinstance(value.value, bool):
            hints[str(name)] = value.value
    if hints.get("readOnlyHint", False):
        return "READ"
    if hints.get("destructiveHint", True):
        return "DESTRUCTIVE"
    return "IDEMPOTENT" if hints.get("idempotentHint", False) else "WRITE"


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
        isinstance(n, ast.Call) and _last(n) in ("current_key", "for_args") for n in _walk(fn)
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
        self.scopes = _Scopes(tree)
        functions = [
            n for n in _walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        infos = {fn.name: _inspect_function(fn) for fn in functions}
        self._handed_to_frameworks(tree, infos)
        writes = {name for name, i in infos.items() if i.effect in ("WRITE", "DESTRUCTIVE")}
        for info in infos.values():
            self._function(info)
        self._calls(tree, infos, writes)
        return self.findings

    def _handed_to_frameworks(self, tree: ast.Module, infos: dict[str, ToolInfo]) -> None:
        """Plain functions given to a framework as tools (``Agent(tools=[fn])``,
        ``function_tool(fn)``, ``llm.bind_tools([fn])``) are tools too."""
        plain = _plain_functions(tree)
        for node in _walk(tree):
            if not isinstance(node, ast.Call) or _kwarg(node, "effect") is not None:
                continue  # retrysafe's tool(fn, effect=...) tags what it wraps
            given: list[ast.expr] = []
            listed = _kwarg(node, "tools")
            if listed is not None:
                given.append(listed)
            last = _last(node)
            bare_tool = isinstance(node.func, ast.Name) and node.func.id == BARE_TOOL_CALL
            if node.args and (last in TOOL_LIST_CALLS | TOOL_WRAPPING_CALLS or bare_tool):
                given.append(node.args[-1] if last == "create_react_agent" else node.args[0])
            func = _kwarg(node, "func")
            if func is not None and last in TOOL_WRAPPING_CALLS:
                given.append(func)
            for expr in given:
                for name in self._function_names(expr, node):
                    if name in plain:
                        infos[name].is_tool = True

    def _function_names(self, expr: ast.expr, at: ast.AST, depth: int = 3) -> list[str]:
        """The names of functions an expression hands over: ``fn``, ``[fn, g]``,
        ``function_tool(fn)``, ``Tool(fn)``, or a name assigned once to such a list."""
        if depth == 0:
            return []
        if isinstance(expr, (ast.List, ast.Tuple, ast.Set)):
            return [n for e in expr.elts for n in self._function_names(e, at, depth)]
        if isinstance(expr, ast.Call) and _last(expr) in TOOL_WRAPPING_CALLS and expr.args:
            return self._function_names(expr.args[0], at, depth - 1)
        if isinstance(expr, ast.Name):
            value = self.scopes.single_value(expr.id, at)
            if isinstance(value, (ast.List, ast.Tuple, ast.Set)):
                return self._function_names(value, at, depth - 1)
            return [expr.id]
        return []

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
            receivers = _http_receivers(fn)
            for node in _walk(fn):
                if isinstance(node, ast.Call):
                    full, last = _name(node), _last(node)
                    base = full.split(".")[0].lower()
                    if last in MUTATING_HTTP and (
                        base in HTTP_MODULES
                        or "client" in base
                        or "session" in base
                        or full.split(".")[0] in receivers
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
            for node in _walk(fn):
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
        for node in _walk(tree):
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
            # random or clock keys, written in place or assigned once before
            key = _kwarg(node, "idempotency_key")
            if last == "explicit" and node.args:
                key = node.args[0]
            if key is not None and self._random_or_clock(key, node):
                self.add(key, "RS006")
        for node in _walk(tree):  # headers={"Idempotency-Key": ...}
            if isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(k, ast.Constant)
                        and isinstance(k.value, str)
                        and k.value.lower() == "idempotency-key"
                        and self._random_or_clock(v, node)
                    ):
                        self.add(v, "RS006")
        # hand-written retry loops calling a write tool
        for loop in _walk(tree):
            if isinstance(loop, (ast.For, ast.While, ast.AsyncFor)):
                handlers = [n for n in _walk(loop) if isinstance(n, ast.Try)]
                if not handlers:
                    continue
                for call in _walk(loop):
                    if isinstance(call, ast.Call) and _last(call) in writes:
                        self.add(
                            call,
                            "RS003",
                            f"hand-written retry loop around {infos[_last(call)].effect} tool {_last(call)!r}",
                        )
                        break

    def _random_or_clock(self, node: ast.AST, at: ast.AST, depth: int = 3) -> bool:
        """A random or clock value: in the expression, or in the one value assigned to a
        name it uses (``key = str(uuid.uuid4())`` on the line before)."""
        if _random_or_clock(node):
            return True
        if depth == 0:
            return False
        for inner in _walk(node):
            if isinstance(inner, ast.Name):
                value = self.scopes.single_value(inner.id, at)
                if value is not None and self._random_or_clock(value, at, depth - 1):
                    return True
        return False


def _plain_functions(tree: ast.Module) -> set[str]:
    """Names of functions defined at module level or inside functions (not methods)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(child.name)
                visit(child)
            elif not isinstance(child, ast.ClassDef):
                visit(child)

    visit(tree)
    return names


class _Scopes:
    """Where each node is (its innermost function, or the module) and what each name is
    assigned in that scope: enough for "a name assigned once in the function"."""

    def __init__(self, tree: ast.Module) -> None:
        self.module = tree
        self.scope_of: dict[int, ast.AST] = {}
        # None stands for an assignment whose value is not one expression (+=, a loop).
        self.assigned: dict[tuple[int, str], list[ast.expr | None]] = {}
        self._visit(tree, tree)

    def _visit(self, node: ast.AST, scope: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else scope
            self.scope_of[id(child)] = inner
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(child, ast.Assign):
                targets, value = child.targets, child.value
            elif isinstance(child, (ast.AnnAssign, ast.NamedExpr)) and child.value is not None:
                targets, value = [child.target], child.value
            elif isinstance(child, (ast.AugAssign, ast.For, ast.AsyncFor)):
                targets = [child.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    self.assigned.setdefault((id(scope), target.id), []).append(value)
            self._visit(child, inner)

    def single_value(self, name: str, at: ast.AST) -> ast.expr | None:
        """The value of ``name`` where it is assigned exactly once in the scope of ``at``
        (else in the module), or None."""
        for scope in (self.scope_of.get(id(at), self.module), self.module):
            values = self.assigned.get((id(scope), name))
            if values is not None:
                return values[0] if len(values) == 1 else None
        return None


def _mentions_session(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.Call) and _last(n) == "session" for n in _walk(tree))


def _random_or_clock(node: ast.AST) -> bool:
    for inner in _walk(node):
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
    """Every finding in one module's source. A file Python cannot parse (a syntax error, a
    NUL byte, an expression nested past the parser's depth) is one RS000 finding with the
    reason, as is one too deeply nested for the checks themselves."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        return [
            Finding(path, exc.lineno or 1, exc.offset or 1, "RS000", f"cannot parse: {exc.msg}")
        ]
    except ValueError as exc:  # "source code string cannot contain null bytes"
        return [Finding(path, 1, 1, "RS000", f"cannot parse: {exc}")]
    except (RecursionError, MemoryError):
        return [Finding(path, 1, 1, "RS000", "cannot parse: nested too deeply for Python's parser")]
    try:
        found = _Checker(path, source).run(tree)
    except RecursionError:
        return [Finding(path, 1, 1, "RS000", "cannot check: nested too deeply to walk")]
    finally:
        _WALKED.__dict__.pop("lists", None)
    return sorted(found, key=lambda f: (f.line, f.column, f.code))


RULES["RS000"] = Rule(
    "RS000", "error", "file cannot be parsed or checked", "fix the syntax error, or split it"
)


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
