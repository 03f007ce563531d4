from __future__ import annotations

import pytest

from saliency_distill.data.arithmetic import ArithmeticError_, evaluate


@pytest.mark.parametrize(
    "text, value",
    [
        ("( 84.0 / 2.0 )", 42.0),
        ("( ( 76.0 - 25.0 ) * 2.0 )", 102.0),
        ("2 + 3 * 4", 14.0),
        ("(2 + 3) * 4", 20.0),
        ("-3 + 10 / 4", -0.5),
        ("8 - 3 - 2", 3.0),
        ("((17 + 15 + 2))", 34.0),
    ],
)
def test_values(text, value):
    assert evaluate(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "2 +", "(2 + 3", "2 3", "__import__('os')", "2 ** 3", "1 / 0", "x + 1"])
def test_rejects_non_arithmetic(text):
    with pytest.raises(ArithmeticError_):
        evaluate(text)
