"""Type checkers understand tether classes (`@dataclass_transform` on the metaclass in the stubs):
mypy --strict accepts a good user script and reports exactly the expected errors in a bad one."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mypy", reason="mypy is installed by `make test`'s venv")

GOOD = """
import abc
from typing import Optional

import tether


class Shape(tether.Object, abc.ABC):
    side: float

    @abc.abstractmethod
    def area(self) -> float: ...


class Square(Shape):
    def area(self) -> float:
        return self.side**2


print(Square(2.0).area())


class Inner(tether.Object):
    val: int


class Outer(tether.Object):
    x: Inner
    name: str = "o"
    note: Optional[Inner] = None


class P(tether.Object, frozen=True, eq=True):
    x: float


class Tree(tether.Object):
    name: str
    children: list["Tree"] = tether.field(default_factory=list)
    attrs: dict[str, int] = tether.field(default_factory=dict)
    parent: tether.Weak["Tree"] = None


t = Tree("root")
t.children.append(Tree("c", parent=t))
first: Tree = t.children[0]
t.attrs["depth"] = 1
kids: tether.List[Inner] = tether.List[Inner]([Inner(1)])
counts = tether.Dict[str, int]({"a": 1})
n: int = counts["a"] + kids[0].val + len(first.children)
up: Optional[Tree] = first.parent
o = Outer(Inner(1), name="n")
v: int = o.x.val
s: str = o.name
p = P(1.0)
q: Outer = tether.replace(o, name="m")
print(v, s, p.x, tether.fields(o), q, tether.asdict(o))
"""

BAD = """
import tether


class Inner(tether.Object):
    val: int


class Outer(tether.Object):
    x: Inner
    name: str = "o"


class P(tether.Object, frozen=True):
    x: float


Inner("x")
Inner()
Outer(Inner(1), nope=3)
P(1.0).x = 2.0
tether.List[Inner]([Inner(1)]).append(5)
tether.Dict[str, int]({"a": 1})["b"] = "two"
"""

EXPECTED_BAD = [
    'bad.py:17: error: Argument 1 to "Inner" has incompatible type "str"; expected "int"  [arg-type]',
    'bad.py:18: error: Missing positional argument "val" in call to "Inner"  [call-arg]',
    'bad.py:19: error: Unexpected keyword argument "nope" for "Outer"  [call-arg]',
    'bad.py:20: error: Property "x" defined in "P" is read-only  [misc]',
    'bad.py:21: error: Argument 1 to "append" of "MutableSequence" has incompatible type "int"; expected "Inner"  [arg-type]',
    'bad.py:22: error: Incompatible types in assignment (expression has type "str", target has type "int")  [assignment]',
]


def mypy(tmp_path, name, source):
    (tmp_path / name).write_text(textwrap.dedent(source).lstrip("\n"))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--no-error-summary", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, [line for line in proc.stdout.splitlines() if line]


def test_mypy_accepts_a_good_script(tmp_path):
    code, lines = mypy(tmp_path, "good.py", GOOD)
    assert (code, lines) == (0, [])


def test_mypy_reports_exactly_the_errors_of_a_bad_script(tmp_path):
    code, lines = mypy(tmp_path, "bad.py", BAD)
    assert code == 1
    assert lines == EXPECTED_BAD
