"""Keyframe schedules: ``"0:(1.02), 10:(1.05), 30:(sin(t/8))"`` -> one value per frame.

Numeric keyframes are interpolated linearly and held before the first and after the last (numpy.interp exactly); an
expression in ``t`` (the frame index) fills every frame from its keyframe up to the next keyframe, and the frames it
fills join the interpolation as known values. Expressions go through a small AST whitelist and are never passed to
``eval``: schedules arrive in YAML files that people share.
"""

import ast
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# name -> (numpy function, number of arguments; None = two or more)
FUNCTIONS: dict[str, tuple[Callable, int | None]] = {
    "sin": (np.sin, 1), "cos": (np.cos, 1), "tan": (np.tan, 1), "abs": (np.abs, 1), "sqrt": (np.sqrt, 1),
    "exp": (np.exp, 1), "log": (np.log, 1), "floor": (np.floor, 1), "ceil": (np.ceil, 1),
    "min": (np.minimum, None), "max": (np.maximum, None),
}
CONSTANTS = {"pi": math.pi, "e": math.e}
BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power}
UNARY = {ast.USub: np.negative, ast.UAdd: np.positive}
ALLOWED = f"numbers, t, pi, e, + - * / **, parentheses and calls to {', '.join(FUNCTIONS)}"
# Readable names for the constructs people try most often; anything else is named by its AST class.
CONSTRUCTS = {
    ast.Attribute: "attribute access", ast.Subscript: "subscript", ast.Lambda: "lambda", ast.ListComp: "comprehension",
    ast.SetComp: "comprehension", ast.DictComp: "comprehension", ast.GeneratorExp: "comprehension",
    ast.Compare: "comparison", ast.BoolOp: "boolean operator", ast.IfExp: "conditional expression",
    ast.NamedExpr: "assignment", ast.Starred: "starred argument", ast.Constant: "non-numeric constant",
    ast.List: "list", ast.Tuple: "tuple", ast.Dict: "dict", ast.Set: "set", ast.JoinedStr: "f-string",
}

KEYFRAME_START = re.compile(r"\s*(\d+)\s*:\s*\(")
MAX_FRAME = 10**7  # keyframe indices beyond any animation's length (2**63 used to overflow numpy)
MAX_EXPRESSION = 1000  # characters: a schedule value is a formula, not a program (100k-deep ones crashed the parser)
MAX_DEPTH = 100  # nesting levels, so compiling and evaluating never come near Python's recursion limit
SEPARATOR = re.compile(r"\s*(,|$)")


class Expression:
    """An arithmetic expression in t, checked against the whitelist once and then evaluated on arrays of frames."""

    def __init__(self, source: str):
        if len(source) > MAX_EXPRESSION:
            raise ValueError(f"the expression has {len(source)} characters; the limit is {MAX_EXPRESSION}")
        try:
            tree = ast.parse(source.strip(), mode="eval")
            self._evaluate = _compile(tree.body)
        except SyntaxError as error:
            raise ValueError(f"invalid expression {_quote(source)}: {error.msg} at its character {error.offset}") from None
        except (RecursionError, MemoryError):  # Python's parser and our compiler recurse per nesting level
            raise ValueError(f"the expression {_quote(source, 40)} is nested too deeply; write it flatter") from None
        self.source = source

    def __call__(self, t: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):  # non-finite results are reported by the caller, with the frame
            return np.broadcast_to(self._evaluate(t.astype(np.float64)), t.shape)


def _compile(node: ast.AST, depth: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """Turn a whitelisted AST node into a function of t; any other construct is a ValueError naming it."""
    if depth > MAX_DEPTH:
        raise ValueError(f"the expression is nested more than {MAX_DEPTH} levels deep; write it flatter")
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = float(node.value)  # floats, so 9**9**9 overflows to inf instead of computing a huge int
        return lambda t: value
    if isinstance(node, ast.Name):
        if node.id == "t":
            return lambda t: t
        if node.id in CONSTANTS:
            value = CONSTANTS[node.id]
            return lambda t: value
        raise ValueError(f"name {node.id!r} is not allowed: the only names are t, pi and e")
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        op, left, right = BINARY[type(node.op)], _compile(node.left, depth + 1), _compile(node.right, depth + 1)
        return lambda t: op(left(t), right(t))
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        op, operand = UNARY[type(node.op)], _compile(node.operand, depth + 1)
        return lambda t: op(operand(t))
    if isinstance(node, ast.Call):
        return _compile_call(node, depth)
    construct = CONSTRUCTS.get(type(node), type(node).__name__)
    raise ValueError(f"{construct} {ast.unparse(node)!r} is not allowed; allowed: {ALLOWED}")


def _compile_call(node: ast.Call, depth: int) -> Callable[[np.ndarray], np.ndarray]:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name not in FUNCTIONS:
        raise ValueError(f"call to {ast.unparse(node.func)!r} is not allowed; the functions are {', '.join(FUNCTIONS)}")
    if node.keywords:
        raise ValueError(f"keyword arguments are not allowed: write {name}(x)")
    function, arity = FUNCTIONS[name]
    if (arity is None and len(node.args) < 2) or (arity is not None and len(node.args) != arity):
        wanted = "two or more arguments" if arity is None else "one argument"
        raise ValueError(f"{name}() takes {wanted}, got {len(node.args)}")
    arguments = [_compile(argument, depth + 1) for argument in node.args]
    if arity == 1:
        return lambda t: function(arguments[0](t))
    return lambda t: functools.reduce(function, [argument(t) for argument in arguments])  # min/max of many


@dataclass(frozen=True)
class Keyframe:
    frame: int
    value: float | Expression


def parse_schedule(text: str) -> list[Keyframe]:
    """``"0:(1.0), 10:(sin(t))"`` -> keyframes sorted by frame; a bare number ``"1.02"`` is a constant."""
    if not isinstance(text, str):
        raise ValueError(f"a schedule is a string like '0:(1.0), 10:(1.5)', got {text!r}")
    if _number(text) is not None:
        return [Keyframe(0, _finite(_number(text), f"schedule {_quote(text)}"))]
    keyframes, position = [], 0
    while True:
        where = f"schedule {_quote(text)}, keyframe {len(keyframes) + 1}"
        start = KEYFRAME_START.match(text, position)
        position += len(text[position:]) - len(text[position:].lstrip())  # point at the offending character
        if start is None:
            raise ValueError(f"{where}: expected 'frame:(value)' at character {position}, "
                             f"as in '0:(1.0), 10:(1.5)'; frames are whole numbers >= 0")
        close = _closing_parenthesis(text, start.end())
        if close is None:
            raise ValueError(f"{where}: the '(' at character {start.end() - 1} is never closed")
        frame = int(start.group(1))
        if frame > MAX_FRAME:
            raise ValueError(f"{where}: frame {start.group(1)[:20]} is beyond the largest keyframe index {MAX_FRAME}")
        keyframes.append(Keyframe(frame, _value(text[start.end():close], f"{where} (frame {frame})")))
        separator = SEPARATOR.match(text, close + 1)
        if separator is None:
            raise ValueError(f"{where}: expected ',' or the end at character {close + 1}")
        position = separator.end()
        if separator.group(1) == "" or not text[position:].strip():  # end of text, or a trailing comma
            break
    frames = [keyframe.frame for keyframe in keyframes]
    repeated = sorted({frame for frame in frames if frames.count(frame) > 1})
    if repeated:
        raise ValueError(f"schedule {_quote(text)}: frame(s) {repeated} appear more than once; keep one value per frame")
    return sorted(keyframes, key=lambda keyframe: keyframe.frame)


def _quote(text: str, limit: int = 80) -> str:
    """``text`` quoted for a message, shortened: a message names the schedule, it does not repeat a long one."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def _closing_parenthesis(text: str, start: int) -> int | None:
    """Index of the ')' closing the '(' just before ``start`` (values may hold parentheses: ``max(t, 1)``)."""
    depth = 1
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return index
    return None


def _value(text: str, where: str) -> float | Expression:
    if not text.strip():
        raise ValueError(f"{where}: the value is empty")
    if _number(text) is not None:
        return _finite(_number(text), where)
    try:
        return Expression(text)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _finite(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{where}: value {value} is not finite")
    return value


def evaluate_schedule(text: str, num_frames: int) -> np.ndarray:
    """The schedule's value at frames 0 .. num_frames - 1, float64 of shape (num_frames,)."""
    keyframes = parse_schedule(text)
    known_frames, known_values = [], []
    for index, keyframe in enumerate(keyframes):
        if isinstance(keyframe.value, float):
            known_frames.append(np.array([keyframe.frame]))
            known_values.append(np.array([keyframe.value]))
            continue
        stop = keyframes[index + 1].frame if index + 1 < len(keyframes) else num_frames
        frames = np.arange(keyframe.frame, max(min(stop, num_frames), keyframe.frame + 1))
        values = keyframe.value(frames)
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(f"schedule {_quote(text)}: {_quote(keyframe.value.source)} is not finite at frame "
                             f"{frames[bad][0]} (division by zero, log or sqrt of a negative, or overflow)")
        known_frames.append(frames)
        known_values.append(values)
    # Keyframes are sorted and each expression stops before the next keyframe, so known frames increase.
    return np.interp(np.arange(num_frames), np.concatenate(known_frames), np.concatenate(known_values))
