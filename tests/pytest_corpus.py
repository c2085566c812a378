"""A project whose tests end in every way pytest knows, with every shape of test id.

The conformance test runs it through `podlink test` and through plain pytest in the same
target and compares the two JUnit reports test case by test case. Kept as text, not as files
under tests/, so that neither this suite's own pytest run nor its linters read it.
"""

from __future__ import annotations

CORPUS: dict[str, str] = {
    "pytest.ini": """\
[pytest]
addopts = --doctest-modules -p no:cacheprovider
""",
    "conftest.py": """\
import pytest


@pytest.fixture
def broken_setup():
    raise RuntimeError("the database is not there")


@pytest.fixture
def broken_teardown():
    yield 1
    raise RuntimeError("could not drop the database")


@pytest.fixture
def skips_in_setup():
    pytest.skip("no network in this container")


@pytest.fixture
def xfails_in_setup():
    pytest.xfail("known to break in setup")
""",
    "shop/__init__.py": "",
    "shop/prices.py": '''\
def net(gross, rate=0.2):
    """The price without tax.

    >>> net(120)
    100.0
    """
    return gross / (1 + rate)


def rounded(value):
    """Rounded to cents.

    >>> rounded(1.005)
    1.01
    """
    return round(value, 2)
''',
    "tests/test_outcomes.py": """\
import sys

import pytest


def test_passes():
    print("some output")


def test_fails():
    value = -1
    assert value > 0, "expected positive"


def test_raises_assertion_error_with_a_message():
    raise AssertionError("expected positive, got -1")


def test_raises_value_error():
    raise ValueError("bad value 3")


def test_skips_inside():
    pytest.skip("not today")


@pytest.mark.skip(reason="marked skip")
def test_marked_skip():
    pass


@pytest.mark.skipif(sys.version_info > (3,), reason="python 3")
def test_skipif():
    pass


@pytest.mark.xfail(reason="bug 7")
def test_xfail_fails():
    assert 1 == 2


@pytest.mark.xfail(reason="bug 8")
def test_xfail_passes():
    pass


@pytest.mark.xfail(reason="bug 9", strict=True)
def test_xfail_strict_fails():
    assert 1 == 2


@pytest.mark.xfail(reason="bug 10", strict=True)
def test_xfail_strict_passes():
    pass


@pytest.mark.xfail(raises=KeyError, reason="only a KeyError is expected")
def test_xfail_wrong_exception():
    raise ValueError("not a key")


@pytest.mark.xfail(run=False, reason="would hang")
def test_xfail_not_run():
    pass


def test_imperative_xfail():
    pytest.xfail("not done yet")


def test_setup_error(broken_setup):
    pass


def test_teardown_error(broken_teardown):
    pass


def test_fails_and_teardown_error(broken_teardown):
    assert broken_teardown == 2


def test_skip_in_fixture(skips_in_setup):
    pass


def test_xfail_in_fixture(xfails_in_setup):
    pass


@pytest.mark.skip(reason="the whole class")
class TestSkippedClass:
    def test_one(self):
        pass

    def test_two(self):
        pass


class TestNested:
    class TestInner:
        def test_deep(self):
            pass

        @pytest.mark.parametrize("n", [1, 2])
        def test_deep_params(self, n):
            assert n == 1
""",
    "tests/test_ids.py": """\
import pytest


@pytest.mark.parametrize(
    "value",
    ["::c::", "a::b", "x[1]", "[]", "a/b", "../up", "tab\\there", "new\\nline", "ünï", "日本",
     "\\x1b[31m", "bell\\a", "sp ace", "-", ""],
)
def test_strings(value):
    assert value != "a::b"


@pytest.mark.parametrize(
    "value",
    [1, 2],
    ids=["::c::", "[nested[brackets]]"],
)
def test_explicit_ids(value):
    pass


@pytest.mark.parametrize("a", [1, 2])
@pytest.mark.parametrize("b", ["x", "y"])
def test_stacked(a, b):
    pass


class TestParams:
    @pytest.mark.parametrize("path", ["dir/file.py::name", "C:\\\\win"])
    def test_paths(self, path):
        pass
""",
    "tests/test_control_output.py": """\
import sys


def test_coloured_failure():
    print("\\x1b[31mred\\x1b[0m and a bell\\a and a form feed\\f")
    sys.stderr.write("\\x1b[1mbold\\x1b[0m\\x00\\n")
    assert "\\x1b[32mgreen\\x1b[0m" == "\\x1b[31mred\\x1b[0m"


def test_control_characters_in_the_message():
    raise ValueError("escape \\x1b, vertical tab \\x0b, null \\x00, surrogate-free")
""",
    "tests/test_unittest_style.py": """\
import unittest


class TestNumbers(unittest.TestCase):
    def test_equal(self):
        self.assertEqual(1, 1)

    def test_not_equal(self):
        self.assertEqual(1, 2)

    def test_sub_tests(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertLess(i, 5)

    @unittest.skip("unittest skip")
    def test_skipped(self):
        pass

    @unittest.expectedFailure
    def test_expected_failure(self):
        self.assertEqual(1, 2)


@unittest.skip("whole unittest class")
class TestSkippedCase(unittest.TestCase):
    def test_a(self):
        pass
""",
    "tests/test_module_importorskip.py": """\
import pytest

pytest.importorskip("a_module_nobody_has")


def test_never_runs():
    pass
""",
    "tests/test_module_skip.py": """\
import pytest

pytest.skip("not on this platform", allow_module_level=True)


def test_never_runs():
    pass
""",
    "tests/test_syntax_error.py": "def test_ok():\n    pass\n\ndef broken(:\n    pass\n",
    "tests/test_import_error.py": "from shop.prices import nothing_here\n",
    "tests/unit/test_deep.py": """\
def test_in_a_sub_folder():
    pass
""",
}
