//! A YAML document as a tree of nodes that remember where they start (line and column, both
//! 1-based), built from yaml-rust2's marked events. Aliases are resolved to copies of their
//! anchors; mapping keys keep their order and duplicates are reported by the compiler.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

/// Deepest nesting accepted (a workflow is shallow; this bounds recursion on hostile input).
pub const MAX_YAML_DEPTH: usize = 64;

/// Most nodes a document may expand to, aliases counted as the copies they become (the official
/// template reader's event limit, `TemplateMemory(maxEvents: 1000000)`); bounds memory on a
/// "billion laughs" document.
pub const MAX_YAML_NODES: usize = 1_000_000;

/// Where a node starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// A YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A scalar; `plain` is false for quoted and block scalars (which are always strings).
    Scalar {
        /// The text.
        text: String,
        /// Unquoted (subject to null/bool/number resolution).
        plain: bool,
        /// Position.
        mark: Mark,
    },
    /// A sequence.
    Sequence {
        /// Items.
        items: Vec<Node>,
        /// Position.
        mark: Mark,
    },
    /// A mapping, in document order.
    Mapping {
        /// Pairs.
        pairs: Vec<(Node, Node)>,
        /// Position.
        mark: Mark,
    },
}

impl Node {
    /// Where the node starts.
    pub fn mark(&self) -> Mark {
        match self {
            Node::Scalar { mark, .. }
            | Node::Sequence { mark, .. }
            | Node::Mapping { mark, .. } => *mark,
        }
    }

    /// The text of a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        match self {
            Node::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// True for a plain scalar that YAML resolves to null (`null`, `~`, empty).
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { text, plain: true, .. }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The value of the first pair whose scalar key equals `key` (case-sensitive, as
    /// workflow keys are).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Mapping { pairs, .. } => pairs
                .iter()
                .find(|(k, _)| k.as_scalar() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name of the node's kind for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "scalar",
            Node::Sequence { .. } => "sequence",
            Node::Mapping { .. } => "mapping",
        }
    }
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlError {
    /// The scanner or parser failed.
    Syntax {
        /// Position.
        mark: Mark,
        /// What went wrong.
        message: String,
    },
    /// The document is empty.
    Empty,
    /// Too deeply nested, or an alias to an unknown anchor.
    Structure {
        /// Position.
        mark: Mark,
        /// What went wrong.
        message: &'static str,
    },
}

fn to_mark(marker: &Marker) -> Mark {
    Mark {
        line: marker.line(),
        col: marker.col() + 1,
    }
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Node, usize)>,
    anchors: Vec<(usize, Node)>,
    root: Option<Node>,
    error: Option<YamlError>,
    /// Nodes built so far, alias copies included.
    nodes: usize,
}

/// The number of nodes in `node`, counting no further than `limit`.
fn node_count(node: &Node, limit: usize) -> usize {
    match node {
        Node::Scalar { .. } => 1,
        Node::Sequence { items, .. } => items.iter().fold(1, |n, item| {
            if n > limit {
                n
            } else {
                n + node_count(item, limit)
            }
        }),
        Node::Mapping { pairs, .. } => pairs.iter().fold(1, |n, (k, v)| {
            if n > limit {
                n
            } else {
                n + node_count(k, limit) + node_count(v, limit)
            }
        }),
    }
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        self.attach(node);
    }

    fn attach(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some((Node::Sequence { items, .. }, _)) => items.push(node),
            Some((Node::Mapping { pairs, .. }, _)) => match pairs.last_mut() {
                // A pair whose value is still missing is marked by a key-only placeholder.
                Some((_, value @ Node::Scalar { plain: true, .. })) if is_pending(value) => {
                    *value = node
                }
                _ => pairs.push((node, pending())),
            },
            Some((Node::Scalar { .. }, _)) => {}
        }
    }
}

/// Placeholder for a mapping value not read yet (a scalar no parser can produce: it has a
/// mark at line 0).
fn pending() -> Node {
    Node::Scalar {
        text: String::new(),
        plain: true,
        mark: Mark { line: 0, col: 0 },
    }
}

fn is_pending(node: &Node) -> bool {
    matches!(
        node,
        Node::Scalar {
            mark: Mark { line: 0, .. },
            ..
        }
    )
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        let mark = to_mark(&marker);
        let added = match &event {
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..) => 1,
            Event::Alias(id) => self
                .anchors
                .iter()
                .rev()
                .find(|(a, _)| a == id)
                .map_or(0, |(_, node)| node_count(node, MAX_YAML_NODES)),
            _ => 0,
        };
        self.nodes = self.nodes.saturating_add(added);
        if self.nodes > MAX_YAML_NODES {
            self.error = Some(YamlError::Structure {
                mark,
                message: "the document expands to too many nodes (aliases count as copies)",
            });
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, _) => {
                let plain = style == TScalarStyle::Plain;
                self.push_value(Node::Scalar { text, plain, mark }, anchor);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_YAML_DEPTH {
                    self.error = Some(YamlError::Structure {
                        mark,
                        message: "the document nests too deeply",
                    });
                    return;
                }
                let node = if matches!(event, Event::SequenceStart(..)) {
                    Node::Sequence {
                        items: Vec::new(),
                        mark,
                    }
                } else {
                    Node::Mapping {
                        pairs: Vec::new(),
                        mark,
                    }
                };
                self.stack.push((node, anchor));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((mut node, anchor)) = self.stack.pop() {
                    start_at_first_child(&mut node);
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.iter().rev().find(|(a, _)| *a == id) {
                Some((_, node)) => {
                    let node = node.clone();
                    self.attach(node);
                }
                None => {
                    self.error = Some(YamlError::Structure {
                        mark,
                        message: "an alias refers to an unknown anchor",
                    })
                }
            },
            _ => {}
        }
    }
}

/// The parser marks a block collection where its first value begins; a collection starts at
/// its first key or item, as the service's reader reports it.
fn start_at_first_child(node: &mut Node) {
    let first = match node {
        Node::Mapping { pairs, .. } => pairs.first().map(|(k, _)| k.mark()),
        Node::Sequence { items, .. } => items.first().map(Node::mark),
        Node::Scalar { .. } => None,
    };
    if let (Some(first), Node::Mapping { mark, .. } | Node::Sequence { mark, .. }) = (first, node)
        && (first.line, first.col) < (mark.line, mark.col)
    {
        *mark = first;
    }
}

/// Parses the first document of `text`.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, false)
        .map_err(|e: ScanError| YamlError::Syntax {
            mark: to_mark(e.marker()),
            message: e.info().to_owned(),
        })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    builder.root.ok_or(YamlError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_positions_order_and_styles() {
        let doc = parse("a: 1\nb:\n  - 'x'\n  - |\n    text\nc: {d: e}\n").expect("parses");
        let Node::Mapping { pairs, mark } = &doc else {
            panic!("mapping")
        };
        assert_eq!(*mark, Mark { line: 1, col: 1 });
        let keys: Vec<_> = pairs.iter().filter_map(|(k, _)| k.as_scalar()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(doc.get("a").map(Node::mark), Some(Mark { line: 1, col: 4 }));
        let Some(Node::Sequence { items, .. }) = doc.get("b") else {
            panic!("sequence")
        };
        assert!(
            matches!(&items[0], Node::Scalar { text, plain: false, mark } if text == "x" && mark.line == 3)
        );
        assert!(matches!(&items[1], Node::Scalar { text, plain: false, .. } if text == "text\n"));
        assert_eq!(
            doc.get("c")
                .and_then(|c| c.get("d"))
                .and_then(Node::as_scalar),
            Some("e")
        );
    }

    #[test]
    fn aliases_resolve_and_nulls_are_recognised() {
        let doc = parse("x: &a {k: v}\ny: *a\nz:\nw: ~\n").expect("parses");
        assert_eq!(
            doc.get("y"),
            doc.get("x"),
            "an alias is a copy of its anchor"
        );
        assert_eq!(
            doc.get("y")
                .and_then(|y| y.get("k"))
                .and_then(Node::as_scalar),
            Some("v")
        );
        assert!(doc.get("z").is_some_and(Node::is_null));
        assert!(doc.get("w").is_some_and(Node::is_null));
    }

    #[test]
    fn alias_bombs_are_refused_before_they_expand() {
        // Ten levels of ten aliases each would expand to 10^10 nodes.
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            doc.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let err = parse(&doc).expect_err("too many nodes");
        assert!(
            matches!(err, YamlError::Structure { message, .. } if message.contains("too many nodes"))
        );
        // A few aliases are fine.
        assert!(parse("a: &a [x, y]\nb: [*a, *a]\n").is_ok());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: c\n").expect_err("unclosed flow sequence");
        let YamlError::Syntax { mark, message } = err else {
            panic!("syntax error")
        };
        assert!(mark.line >= 1 && !message.is_empty());
        assert_eq!(parse(""), Err(YamlError::Empty));
    }
}
