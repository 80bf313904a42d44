//! The entity types every loaded plugin declared, and which plugin runs each.
//!
//! A type keeps its index for the life of the server, across swaps, so an
//! entity's `TypeIndex` never needs rewriting; a swap replaces the entries
//! of the plugin's types in place (see [`SwapPlan`]).

use std::collections::HashMap;

use wyrm_runtime::bindings::{AttrFlags, EntityType, Exposure, PluginInfo};

/// Index of a type in the registry.
pub type TypeIndex = usize;

/// One entity type as the host knows it.
#[derive(Debug, Clone)]
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
    /// Its area of interest in a space; none sees nothing.
    pub aoi: Option<super::space::Aoi>,
    attr_index: HashMap<String, usize>,
    methods: HashMap<String, Exposure>,
}

impl EntityTypeInfo {
    fn from_decl(plugin: usize, kind: usize, t: &EntityType) -> Result<Self, String> {
        let mut attr_index = HashMap::new();
        for (i, a) in t.attrs.iter().enumerate() {
            if attr_index.insert(a.name.clone(), i).is_some() {
                return Err(format!(
                    "entity type {} declares attribute {} twice",
                    t.name, a.name
                ));
            }
        }
        if let Some(a) = t.aoi {
            let ok = |v: f32| v.is_finite() && v >= 0.0;
            if !ok(a.radius) || !ok(a.hysteresis) {
                return Err(format!(
                    "entity type {} declares an area of interest with radius {} and \
                     hysteresis {}: both must be finite and not negative",
                    t.name, a.radius, a.hysteresis
                ));
            }
        }
        Ok(Self {
            name: t.name.clone(),
            aoi: t.aoi.map(|a| super::space::Aoi {
                radius: a.radius,
                hysteresis: a.hysteresis,
                events: a.events,
            }),
            plugin,
            kind: kind as u32,
            attrs: t.attrs.iter().map(|a| (a.name.clone(), a.flags)).collect(),
            attr_index,
            methods: t
                .methods
                .iter()
                .map(|m| (m.name.clone(), m.exposure))
                .collect(),
        })
    }

    /// Whether entities of this type are saved: it declares a persistent
    /// attribute.
    pub fn persistent(&self) -> bool {
        self.attrs
            .iter()
            .any(|(_, f)| f.contains(AttrFlags::PERSISTENT))
    }

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

/// How a plugin's new version changes the registry, checked before anything
/// changes: applied only if the swap goes through.
#[derive(Debug)]
pub struct SwapPlan {
    plugin: usize,
    /// Existing types, with their new description and, per old attribute
    /// index, the new one.
    replaced: Vec<(TypeIndex, EntityTypeInfo, Vec<usize>)>,
    /// Types the new version adds.
    added: Vec<EntityTypeInfo>,
    /// Types the new version no longer declares (none has a live entity).
    retired: Vec<TypeIndex>,
}

impl SwapPlan {
    /// For each replaced type whose attribute indices moved: the type and the
    /// map from old attribute index to new, plus the new attribute count.
    pub fn attr_moves(&self) -> impl Iterator<Item = (TypeIndex, &[usize], usize)> {
        self.replaced
            .iter()
            .filter(|(_, info, map)| {
                map.iter().enumerate().any(|(i, &j)| i != j) || map.len() != info.attrs.len()
            })
            .map(|(ty, info, map)| (*ty, map.as_slice(), info.attrs.len()))
    }
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
            let entry = EntityTypeInfo::from_decl(plugin, kind, t).map_err(anyhow::Error::msg)?;
            self.by_name.insert(t.name.clone(), self.types.len());
            self.types.push(entry);
        }
        Ok(())
    }

    /// Checks that `info`, a new version of plugin `plugin`, can take over:
    /// every type that has live entities (`in_use`) is still declared with
    /// every attribute it had, and no name clashes with another plugin.
    pub fn plan_swap(
        &self,
        plugin: usize,
        info: &PluginInfo,
        in_use: impl Fn(TypeIndex) -> bool,
    ) -> Result<SwapPlan, String> {
        let mut plan = SwapPlan {
            plugin,
            replaced: Vec::new(),
            added: Vec::new(),
            retired: Vec::new(),
        };
        for (kind, t) in info.entity_types.iter().enumerate() {
            let entry = EntityTypeInfo::from_decl(plugin, kind, t)?;
            match self.by_name.get(&t.name) {
                Some(&ty) if self.types[ty].plugin != plugin => {
                    return Err(format!("entity type {} belongs to another plugin", t.name));
                }
                Some(&ty) => {
                    let old = &self.types[ty];
                    let mut map = Vec::with_capacity(old.attrs.len());
                    for (name, _) in &old.attrs {
                        match entry.attr(name) {
                            Some(j) => map.push(j),
                            None => return Err(format!("{} no longer declares attribute {name}, which would drop its values", t.name)),
                        }
                    }
                    plan.replaced.push((ty, entry, map));
                }
                None => plan.added.push(entry),
            }
        }
        for (name, &ty) in &self.by_name {
            if self.types[ty].plugin == plugin && !plan.replaced.iter().any(|(t, ..)| *t == ty) {
                if in_use(ty) {
                    return Err(format!("the new version does not declare entity type {name}, which has live entities"));
                }
                plan.retired.push(ty);
            }
        }
        Ok(plan)
    }

    /// Applies a plan made by [`plan_swap`](Self::plan_swap).
    pub fn apply(&mut self, plan: SwapPlan) {
        for (ty, info, _) in plan.replaced {
            self.types[ty] = info;
        }
        for ty in plan.retired {
            self.by_name.remove(&self.types[ty].name);
        }
        for info in plan.added {
            debug_assert_eq!(info.plugin, plan.plugin);
            self.by_name.insert(info.name.clone(), self.types.len());
            self.types.push(info);
        }
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
