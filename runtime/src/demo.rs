//! The example Rust-defined type that `tether.testing`, the heap profiles and the benchmarks
//! share: a binary tree node with reflected, read-only fields. Top floor: it only uses the
//! public API, the way an extension author's crate would.
//!
//! ```
//! use tether_runtime::demo::{build_tree, walk_tree};
//! let root = build_tree(7).unwrap(); // a complete tree of depth 2
//! assert_eq!(walk_tree(&root), (7, 0 + 1 + 2 + 3 + 4 + 5 + 6));
//! assert_eq!(root.value(), 0);
//! assert_eq!(root.left().unwrap().value(), 1);
//! ```

use crate::{field, object_type, FieldKind, ObjRef, Value, ANY_OBJECT};

/// A binary tree node built natively.
#[derive(Debug)]
pub struct TreeNode {
    left: Option<ObjRef<TreeNode>>,
    right: Option<ObjRef<TreeNode>>,
    value: i64,
}

impl TreeNode {
    /// The left child.
    pub fn left(&self) -> Option<&ObjRef<TreeNode>> {
        self.left.as_ref()
    }

    /// The right child.
    pub fn right(&self) -> Option<&ObjRef<TreeNode>> {
        self.right.as_ref()
    }

    /// The node's value (its index in heap order).
    pub fn value(&self) -> i64 {
        self.value
    }
}

fn child(c: &Option<ObjRef<TreeNode>>) -> Value {
    c.as_ref()
        .map_or(Value::None, |n| Value::Object(n.clone().into_any()))
}

object_type!(
    TreeNode,
    "tether.demo.TreeNode",
    fields = [
        field!(
            TreeNode,
            "left",
            FieldKind::Optional(Box::new(FieldKind::Object(ANY_OBJECT))),
            get = |n| child(&n.left)
        ),
        field!(
            TreeNode,
            "right",
            FieldKind::Optional(Box::new(FieldKind::Object(ANY_OBJECT))),
            get = |n| child(&n.right)
        ),
        field!(
            TreeNode,
            "value",
            FieldKind::Int,
            get = |n| Value::Int(n.value)
        ),
    ]
);

/// A binary tree of exactly `nodes` nodes in heap order (node `i` has children `2i+1` and
/// `2i+2` when they are below `nodes`), so its depth is `log2(nodes)`; `None` for 0 nodes.
pub fn build_tree(nodes: usize) -> Option<ObjRef<TreeNode>> {
    (nodes > 0).then(|| build_node(0, nodes))
}

fn build_node(index: usize, nodes: usize) -> ObjRef<TreeNode> {
    let sub = |i: usize| (i < nodes).then(|| build_node(i, nodes));
    ObjRef::new(TreeNode {
        left: sub(2 * index + 1),
        right: sub(2 * index + 2),
        value: index as i64,
    })
}

/// The number of nodes and the sum of their values (a walk that touches every node).
pub fn walk_tree(root: &ObjRef<TreeNode>) -> (usize, i64) {
    let (mut n, mut sum) = (1, root.value);
    for c in [&root.left, &root.right].into_iter().flatten() {
        let (cn, cs) = walk_tree(c);
        n += cn;
        sum += cs;
    }
    (n, sum)
}
