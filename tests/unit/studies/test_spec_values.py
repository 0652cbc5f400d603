"""Study arguments become command-line values that jsonargparse reads back as the same YAML value."""

import pytest

from medlight.studies.spec import _cli_value


@pytest.mark.parametrize(
    "value, expected", [(None, "null"), (True, "true"), (False, "false"), (3, "3"), (0.25, "0.25"), ([1, 2], "[1, 2]")]
)
def test_cli_value(value, expected: str) -> None:
    assert _cli_value(value) == expected
