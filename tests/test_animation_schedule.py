import numpy as np
import pytest

from kandinsky_video.animation.schedule import evaluate_schedule, parse_schedule


@pytest.mark.parametrize("text, frames, keys, values", [
    ("0:(1.02), 10:(1.05), 30:(1.0)", 40, [0, 10, 30], [1.02, 1.05, 1.0]),
    ("5: (2), 3:(-1)", 12, [3, 5], [-1, 2]),  # unsorted, held before the first keyframe and after the last
    ("0:(0), 100:(10),", 20, [0, 100], [0, 10]),  # a keyframe past the end still sets the slope; trailing comma
    ("7:(0.5)", 5, [7], [0.5]),
    ("1.02", 4, [0], [1.02]),  # a bare number is a constant
])
def test_numeric_keyframes_equal_numpy_interp(text, frames, keys, values):
    np.testing.assert_allclose(evaluate_schedule(text, frames), np.interp(np.arange(frames), keys, values), rtol=0,
                               atol=1e-12)


def test_expressions_fill_their_segment_frame_by_frame():
    values = evaluate_schedule("0:(sin(t/4) + 0.5*cos(pi*t)), 10:(2.0), 20:(max(t, 25) ** 0.5 - floor(e))", 30)
    t = np.arange(30.0)
    np.testing.assert_allclose(values[:10], np.sin(t[:10] / 4) + 0.5 * np.cos(np.pi * t[:10]), atol=1e-12)
    end = np.sqrt(np.maximum(t[20:], 25)) - 2  # the expression segment runs to the end
    np.testing.assert_allclose(values[20:], end, atol=1e-12)
    # numbers between an expression and a number interpolate towards the expression's value at its keyframe
    np.testing.assert_allclose(values[10:21], np.linspace(2.0, end[0], 11), atol=1e-12)
    functions = "abs(-t) + sqrt(t) + exp(-t) + log(t + 1) + tan(t / 100) + ceil(t / 3) + min(t, 4, 9) - +t"
    expected = t + np.sqrt(t) + np.exp(-t) + np.log(t + 1) + np.tan(t / 100) + np.ceil(t / 3) + np.minimum(t, 4) - t
    np.testing.assert_allclose(evaluate_schedule(f"0:({functions})", 30), expected, atol=1e-12)


@pytest.mark.parametrize("expression, named", [
    ("t.__class__", "attribute access 't.__class__'"),
    ("(1).__class__.__bases__", "attribute access"),
    ("__import__('os')", "call to '__import__'"),
    ("open('/etc/passwd')", "call to 'open'"),
    ("eval('1')", "call to 'eval'"),
    ("x + 1", "name 'x'"),
    ("__builtins__", "name '__builtins__'"),
    ("t[0]", "subscript"),
    ("(lambda: 1)()", "call to 'lambda: 1'"),
    ("lambda: 1", "lambda"),
    ("[i for i in t]", "comprehension"),
    ("t if t else 1", "conditional expression"),
    ("t > 1", "comparison"),
    ("'text'", "non-numeric constant"),
    ("sin(x=t)", "keyword arguments"),
    ("sin(t, t)", "sin() takes one argument"),
])
def test_the_evaluator_refuses_anything_off_the_whitelist(expression, named):
    with pytest.raises(ValueError, match="keyframe 2 \\(frame 5\\)") as error:
        parse_schedule(f"0:(1), 5:({expression})")
    assert named in str(error.value)


@pytest.mark.parametrize("text, where", [
    ("0:(1), 10(2)", "keyframe 2: expected 'frame:(value)' at character 7"),
    ("0:(1) 10:(2)", "keyframe 1: expected ',' or the end at character 5"),
    ("0:(1), 8:(sin(t)", "keyframe 2: the '(' at character 9 is never closed"),
    ("x:(1)", "keyframe 1: expected 'frame:(value)' at character 0"),
    ("-3:(1)", "at character 0"),
    ("0:()", "keyframe 1 (frame 0): the value is empty"),
    ("0:(1 +)", "keyframe 1 (frame 0): invalid expression"),
    ("0:(1), 0:(2)", "frame(s) [0] appear more than once"),
    ("0:(inf)", "not finite"),
    ("", "at character 0"),
])
def test_malformed_schedules_say_where(text, where):
    with pytest.raises(ValueError) as error:
        parse_schedule(text)
    assert where in str(error.value)


def test_non_finite_expression_values_name_the_frame():
    with pytest.raises(ValueError, match="not finite at frame 3"):
        evaluate_schedule("0:(1 / (t - 3))", 10)
