"""Type stubs for tether's native core."""

from typing import Any, Callable, Literal

class ObjectMeta(type):
    """Metaclass of tether classes: annotations become native fields."""

class _Base:
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __setstate__(self, state: dict[str, Any]) -> None: ...

class Object(_Base, metaclass=ObjectMeta):
    """Base of tether classes; declare fields with annotations.

    Pass ``frozen=True`` in the class statement to forbid field assignment.
    """

    def __init_subclass__(cls, *, frozen: bool = ...) -> None: ...
    def __init__(self, *args: Any, **fields: Any) -> None: ...

class TreeNode(Object):
    """A Rust-defined native type (see ``tether.testing.make_tree``)."""

    @property
    def left(self) -> TreeNode | None: ...
    @property
    def right(self) -> TreeNode | None: ...
    @property
    def value(self) -> int: ...

class Blob(Object):
    """A native memory block (see ``tether.testing.alloc_blob``)."""

    @property
    def size(self) -> int: ...

class Function:
    """A native function object; calling it converts arguments and the result."""

    @property
    def policy(self) -> Literal["tied", "fresh"]: ...
    def __call__(self, *args: Any) -> Any: ...

class Moved:
    """A native object in transit, made by :func:`move`."""

class MovedError(RuntimeError):
    """Use of a wrapper whose native object was moved out."""

class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen class."""

def move(x: Object) -> Moved: ...
def function(f: Callable[..., Any], policy: Literal["tied", "fresh"] = "tied") -> Function: ...
def get_global(name: str) -> Function: ...
def register_global(
    name: str,
    f: Callable[..., Any] | Function,
    policy: Literal["tied", "fresh"] = "tied",
    override: bool = False,
) -> None: ...
def list_globals() -> list[str]: ...
def set_tying(on: bool) -> None: ...
def tying_enabled() -> bool: ...
def stats() -> dict[str, Any]: ...
def trim() -> None: ...
def _reconstruct(cls: type[Object]) -> Object: ...
