//! The entity types every loaded plugin declared, and which plugin runs each.

use std::collections::HashMap;

use crate::plugin::bindings::{AttrFlags, Exposure, PluginInfo};

/// Index of a type in the registry.
pub type TypeIndex = usize;

/// One entity type as the host knows it.
#[derive(Debug)]
pub struct EntityTypeInfo {
    /// Type name.
    pub name: String,
    /// Index of the plugin that implements it.
    pub plugin: usize,
    /// Index of the type in that plugin's `init` list (the `kind` the plugin
    /// receives in every entity-ref).
    pub kind: u32,
    /// Declared attributes, in order; an entity's attributes use these indices.
    pub attrs: Vec<(String, AttrFlags)>,
    attr_index: HashMap<String, usize>,
    methods: HashMap<String, Exposure>,
}

impl EntityTypeInfo {
    /// The index of a declared attribute.
    pub fn attr(&self, name: &str) -> Option<usize> {
        self.attr_index.get(name).copied()
    }

    /// Who may call a declared method.
    pub fn method(&self, name: &str) -> Option<Exposure> {
        self.methods.get(name).copied()
    }
}

/// All entity types of a server.
#[derive(Debug, Default)]
pub struct TypeRegistry {
    types: Vec<EntityTypeInfo>,
    by_name: HashMap<String, TypeIndex>,
}

impl TypeRegistry {
    /// Registers the types of plugin number `plugin`. Fails on a name some
    /// plugin already declared.
    pub fn add_plugin(&mut self, plugin: usize, info: &PluginInfo) -> anyhow::Result<()> {
        for (kind, t) in info.entity_types.iter().enumerate() {
            if self.by_name.contains_key(&t.name) {
                anyhow::bail!(
                    "entity type {} is declared by more than one plugin (again by {})",
                    t.name,
                    info.name
                );
            }
            let mut attr_index = HashMap::new();
            for (i, a) in t.attrs.iter().enumerate() {
                if attr_index.insert(a.name.clone(), i).is_some() {
                    anyhow::bail!("entity type {} declares attribute {} twice", t.name, a.name);
                }
            }
            let methods = t
                .methods
                .iter()
                .map(|m| (m.name.clone(), m.exposure))
                .collect();
            self.by_name.insert(t.name.clone(), self.types.len());
            self.types.push(EntityTypeInfo {
                name: t.name.clone(),
                plugin,
                kind: kind as u32,
                attrs: t.attrs.iter().map(|a| (a.name.clone(), a.flags)).collect(),
                attr_index,
                methods,
            });
        }
        Ok(())
    }

    /// The index of a type by name.
    pub fn find(&self, name: &str) -> Option<TypeIndex> {
        self.by_name.get(name).copied()
    }

    /// A type by index.
    pub fn get(&self, index: TypeIndex) -> &EntityTypeInfo {
        &self.types[index]
    }
}
