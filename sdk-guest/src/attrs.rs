//! A map of initial attributes for a new entity.

use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};

use crate::codec;

/// Initial attributes for [`Ctx::create_entity`](crate::Ctx::create_entity):
/// attribute name → any serialisable value. Build it with
/// [`attrs!`](crate::attrs) or [`Attrs::with`].
///
/// A value that fails to encode is reported when the map is serialised, so
/// `create_entity` returns the error.
#[derive(Clone, Debug, Default)]
pub struct Attrs {
    entries: Vec<(String, rmpv::Value)>,
    error: Option<String>,
}

impl Attrs {
    /// An empty map.
    pub fn new() -> Self {
        Attrs::default()
    }

    /// Adds (or replaces) the attribute `name`.
    pub fn with(mut self, name: impl Into<String>, value: impl Serialize) -> Self {
        let name = name.into();
        let value = codec::encode(&value).and_then(|bytes| {
            rmpv::decode::read_value(&mut bytes.as_slice())
                .map_err(|e| crate::Error::new(e.to_string()))
        });
        match value {
            Ok(v) => {
                self.entries.retain(|(k, _)| *k != name);
                self.entries.push((name, v));
            }
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(format!("attribute {name}: {e}"));
                }
            }
        }
        self
    }

    /// Whether no attribute was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Serialize for Attrs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(e) = &self.error {
            return Err(S::Error::custom(e));
        }
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}
