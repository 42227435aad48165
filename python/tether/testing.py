"""Functions for tests and demos, defined in Rust through the runtime's registration API (the
way an extension author would) and looked up here from the runtime's global registry.

- ``echo(x)``: returns its argument (tied policy: ``echo(x) is x``).
- ``echo_fresh(x)``: returns its argument as a new, unbound wrapper (fresh policy).
- ``call(f, *args)``: calls the Python callable ``f`` through the native function path.
- ``use_count(obj)``: the native strong count of ``obj``, not counting the call's own reference.
- ``discard(obj)``: drops the native reference it is given (use with ``tether.move``).
- ``alloc_blob(n)``: an ``n``-byte native block from the runtime's allocator (a ``Blob`` with a
  ``size`` field); an impossible size raises ``MemoryError`` and changes nothing.
- ``start_writer(obj, index, n, *values)``: a native thread (no GIL) sets field number ``index``
  of ``obj`` to ``values`` in turn, ``n`` times; returns a ``Worker`` (``done``, see ``join``).
- ``start_reader(obj, index, n)``: a native thread copies field ``index`` of ``obj`` ``n`` times.
- ``start_holder(obj, index, n)``: a native thread holds ``obj`` and ``n`` times checks that
  following field ``index`` twice comes back to it (a two-object cycle), then drops it.
- ``make_plain()``: an object of a header-less Rust type (no tie header): returning it to Python
  raises ``TypeError``.
- ``join(worker)``: waits for a worker whose ``done`` is true and raises what it raised.
- ``make_tree(depth)``: a complete binary tree of the Rust-defined ``TreeNode`` type
  (fields ``left``, ``right``, ``value``), built natively and wrapped lazily.
- ``make_list(n)``: ``[tether.List[TreeNode], tether.Dict[int, TreeNode]]`` built by Rust code
  (the runtime's ``containers::List``/``Map``): ``n`` nodes, and a map from their index to them.
"""

from . import _native

echo = _native.get_global("tether.testing.echo")
echo_fresh = _native.get_global("tether.testing.echo_fresh")
call = _native.get_global("tether.testing.call")
use_count = _native.get_global("tether.testing.use_count")
discard = _native.get_global("tether.testing.discard")
make_tree = _native.get_global("tether.testing.make_tree")
make_list = _native.get_global("tether.testing.make_list")
alloc_blob = _native.get_global("tether.testing.alloc_blob")
start_writer = _native.get_global("tether.testing.start_writer")
start_reader = _native.get_global("tether.testing.start_reader")
start_holder = _native.get_global("tether.testing.start_holder")
join = _native.get_global("tether.testing.join")
make_plain = _native.get_global("tether.testing.make_plain")
Worker = _native.Worker
TreeNode = _native.TreeNode
Blob = _native.Blob

__all__ = [
    "echo",
    "echo_fresh",
    "call",
    "start_writer",
    "start_reader",
    "start_holder",
    "join",
    "make_plain",
    "Worker",
    "use_count",
    "discard",
    "make_tree",
    "make_list",
    "alloc_blob",
    "TreeNode",
    "Blob",
]
