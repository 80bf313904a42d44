//! Paths into attribute values.

use crate::PathSegment;

/// A path from an entity's attribute root to a value inside it: a top-level
/// attribute name, then map keys and list indices.
///
/// Build one with [`path!`](crate::path) (`path!["rooms", room]`), or pass a
/// plain `&str` / `String` wherever an `impl Into<Path>` is taken: that is the
/// one-segment path naming a top-level attribute.
#[derive(Clone, Debug, Default)]
pub struct Path(Vec<PathSegment>);

impl Path {
    /// The empty path. Push at least the attribute name before using it.
    pub fn new() -> Self {
        Path(Vec::new())
    }

    /// Appends a segment: a map key (`&str`, `String`, `&String`) or a list
    /// index (`u32`).
    pub fn push(&mut self, seg: impl IntoSegment) {
        self.0.push(seg.into_segment());
    }

    /// This path with one more segment.
    pub fn then(mut self, seg: impl IntoSegment) -> Self {
        self.push(seg);
        self
    }

    /// The segments, as the host import takes them.
    pub fn segments(&self) -> &[PathSegment] {
        &self.0
    }

    /// A readable form for error messages: `rooms.lobby[3]`.
    pub fn display(&self) -> String {
        let mut out = String::new();
        for seg in &self.0 {
            match seg {
                PathSegment::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                PathSegment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

/// Something that can be one segment of a [`Path`].
pub trait IntoSegment {
    /// The segment.
    fn into_segment(self) -> PathSegment;
}

impl IntoSegment for &str {
    fn into_segment(self) -> PathSegment {
        PathSegment::Key(self.to_owned())
    }
}

impl IntoSegment for String {
    fn into_segment(self) -> PathSegment {
        PathSegment::Key(self)
    }
}

impl IntoSegment for &String {
    fn into_segment(self) -> PathSegment {
        PathSegment::Key(self.clone())
    }
}

impl IntoSegment for u32 {
    fn into_segment(self) -> PathSegment {
        PathSegment::Index(self)
    }
}

impl IntoSegment for PathSegment {
    fn into_segment(self) -> PathSegment {
        self
    }
}

impl From<&str> for Path {
    fn from(name: &str) -> Self {
        Path(vec![name.into_segment()])
    }
}

impl From<String> for Path {
    fn from(name: String) -> Self {
        Path(vec![name.into_segment()])
    }
}

impl From<&String> for Path {
    fn from(name: &String) -> Self {
        Path(vec![name.into_segment()])
    }
}

impl From<&Path> for Path {
    fn from(p: &Path) -> Self {
        p.clone()
    }
}
