//! Procedural macros of the Wyrm guest SDK: `#[entity]`, which turns an
//! inherent `impl` block into a `wyrm_sdk::Entity` implementation. Use it
//! through `wyrm_sdk::entity`; this crate is not meant to be a direct
//! dependency.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, LitStr, Pat, ReturnType, Type, TypeReference};

/// Turns an inherent `impl` block into a `wyrm_sdk::Entity` implementation.
///
/// ```ignore
/// #[wyrm_sdk::entity(attrs(total = "all_clients", secret = "persistent"))]
/// impl Counter {
///     #[own_client]
///     fn add(&mut self, ctx: &mut Ctx, by: u64) -> Result<(), String> { /* ... */ }
///     fn reset(&mut self) { self.n = 0; }
/// }
/// ```
///
/// Arguments of the attribute:
/// - `attrs(name = "flags", ...)`: the attributes the type declares. Flags are
///   `persistent`, `own_client`, `all_clients`, combined with `|`
///   (`"persistent|all_clients"`); `""` or `"none"` for none.
/// - `name = "Type"`: the type name the host knows (default: the Rust type's
///   name).
///
/// Inside the block:
/// - Every method taking `&self` or `&mut self` is an RPC method, callable by
///   its Rust name. Its exposure is set with `#[own_client]`,
///   `#[all_clients]` or `#[server]` (the default: server only). Mark a
///   method `#[helper]` to keep it out of RPC.
/// - The first parameter after `self` may be the context, `ctx: &mut Ctx`;
///   the others are decoded, in order, from the MessagePack array of
///   arguments. A method returns `()` or `Result<(), E>` with `E: Display`.
/// - `aoi(radius = 100.0, hysteresis = 10.0)`: the type's area of interest
///   in a space (hysteresis defaults to 0).
/// - Methods named `on_created`, `on_destroyed`, `on_client_connected` and
///   `on_client_disconnected` are lifecycle hooks (`&mut self`, optionally
///   `ctx: &mut Ctx`), not RPC methods; so are `on_tick(dt_ms: u32)` (on a
///   space), `on_aoi_enter(other: EntityId)` and `on_aoi_leave(other:
///   EntityId)` (which ask the host for AOI events; they need `aoi(..)`).
/// - An associated `fn migrate(from_version: &str, data: &[u8]) -> Result<Self, String>`
///   replaces the default state migration.
/// - Associated functions without `self` are left alone.
#[proc_macro_attribute]
pub fn entity(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = TokenStream2::from(args);
    let item = syn::parse_macro_input!(input as ItemImpl);
    match expand(args, item) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct Args {
    name: Option<LitStr>,
    attrs: Vec<(String, Vec<&'static str>)>,
    /// `aoi(radius = .., hysteresis = ..)`.
    aoi: Option<(syn::Expr, syn::Expr)>,
}

fn parse_args(args: TokenStream2) -> syn::Result<Args> {
    let mut out = Args {
        name: None,
        attrs: Vec::new(),
        aoi: None,
    };
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            out.name = Some(meta.value()?.parse()?);
            Ok(())
        } else if meta.path.is_ident("attrs") {
            meta.parse_nested_meta(|attr| {
                let ident = attr
                    .path
                    .get_ident()
                    .ok_or_else(|| attr.error("expected an attribute name"))?
                    .to_string();
                let lit: LitStr = attr.value()?.parse()?;
                let flags = parse_flags(&lit)?;
                if out.attrs.iter().any(|(n, _)| *n == ident) {
                    return Err(attr.error(format!("attribute `{ident}` declared twice")));
                }
                out.attrs.push((ident, flags));
                Ok(())
            })
        } else if meta.path.is_ident("aoi") {
            let (mut radius, mut hysteresis) = (None, None);
            meta.parse_nested_meta(|a| {
                if a.path.is_ident("radius") {
                    radius = Some(a.value()?.parse::<syn::Expr>()?);
                } else if a.path.is_ident("hysteresis") {
                    hysteresis = Some(a.value()?.parse::<syn::Expr>()?);
                } else {
                    return Err(a.error("expected `radius = ..` or `hysteresis = ..`"));
                }
                Ok(())
            })?;
            let radius = radius.ok_or_else(|| meta.error("`aoi(...)` needs `radius = ..`"))?;
            let hysteresis = hysteresis.unwrap_or_else(|| syn::parse_quote!(0.0));
            out.aoi = Some((radius, hysteresis));
            Ok(())
        } else {
            Err(meta.error("expected `attrs(...)`, `aoi(...)` or `name = \"...\"`"))
        }
    });
    syn::parse::Parser::parse2(parser, args)?;
    Ok(out)
}

fn parse_flags(lit: &LitStr) -> syn::Result<Vec<&'static str>> {
    let mut flags = Vec::new();
    let value = lit.value();
    let value = value.trim();
    if value.is_empty() || value == "none" {
        return Ok(flags);
    }
    for part in value.split('|') {
        let flag = match part.trim().replace('-', "_").as_str() {
            "persistent" => "PERSISTENT",
            "own_client" => "OWN_CLIENT",
            "all_clients" => "ALL_CLIENTS",
            other => {
                return Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "unknown attribute flag `{other}`: expected persistent, own_client, \
                         all_clients (combined with `|`), or \"none\""
                    ),
                ))
            }
        };
        if !flags.contains(&flag) {
            flags.push(flag);
        }
    }
    Ok(flags)
}

/// Lifecycle hooks and how many arguments each takes after the context.
const HOOKS: [(&str, usize); 7] = [
    ("on_created", 0),
    ("on_destroyed", 0),
    ("on_client_connected", 0),
    ("on_client_disconnected", 0),
    ("on_tick", 1),
    ("on_aoi_enter", 1),
    ("on_aoi_leave", 1),
];

const MARKERS: [&str; 4] = ["own_client", "all_clients", "server", "helper"];

struct Method {
    name: syn::Ident,
    cfgs: Vec<syn::Attribute>,
    exposure: &'static str,
    takes_ctx: bool,
    params: Vec<Type>,
    returns_unit: bool,
}

struct HookFn {
    name: syn::Ident,
    cfgs: Vec<syn::Attribute>,
    takes_ctx: bool,
    params: Vec<Type>,
    returns_unit: bool,
}

/// Removes our marker attributes from a method and returns the one found.
fn take_marker(f: &mut ImplItemFn) -> syn::Result<Option<(String, Span)>> {
    let mut found: Option<(String, Span)> = None;
    let mut err = None;
    f.attrs.retain(|a| {
        let Some(ident) = a.path().get_ident() else {
            return true;
        };
        let name = ident.to_string();
        if !MARKERS.contains(&name.as_str()) {
            return true;
        }
        if let Err(e) = a.meta.require_path_only() {
            err.get_or_insert(e);
        }
        if found.is_some() {
            err.get_or_insert(syn::Error::new(
                a.span(),
                "only one of #[own_client], #[all_clients], #[server], #[helper] is allowed",
            ));
        }
        found = Some((name, a.span()));
        false
    });
    match err {
        Some(e) => Err(e),
        None => Ok(found),
    }
}

/// Whether `ty` is `&Ctx` / `&mut Ctx` (any path ending in `Ctx`).
fn is_ctx(ty: &Type) -> bool {
    match ty {
        Type::Reference(TypeReference { elem, .. }) => match elem.as_ref() {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Ctx"),
            _ => false,
        },
        _ => false,
    }
}

fn returns_unit(output: &ReturnType) -> bool {
    match output {
        ReturnType::Default => true,
        ReturnType::Type(_, ty) => matches!(ty.as_ref(), Type::Tuple(t) if t.elems.is_empty()),
    }
}

/// Splits a method's parameters into (takes ctx, argument types).
fn split_params(f: &ImplItemFn) -> syn::Result<(bool, Vec<Type>)> {
    let mut takes_ctx = false;
    let mut params = Vec::new();
    for (i, input) in f.sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(r) => {
                if !matches!(r.ty.as_ref(), Type::Reference(_)) {
                    return Err(syn::Error::new(
                        r.span(),
                        "entity methods take `&self` or `&mut self`",
                    ));
                }
            }
            FnArg::Typed(pt) => {
                if i == 1 && is_ctx(&pt.ty) {
                    takes_ctx = true;
                } else {
                    if let Pat::Ident(pi) = pt.pat.as_ref() {
                        if pi.by_ref.is_some() {
                            return Err(syn::Error::new(
                                pi.span(),
                                "`ref` parameters are not supported",
                            ));
                        }
                    }
                    if let Type::ImplTrait(_) = pt.ty.as_ref() {
                        return Err(syn::Error::new(
                            pt.ty.span(),
                            "RPC parameters need a concrete type (decoded from MessagePack)",
                        ));
                    }
                    params.push((*pt.ty).clone());
                }
            }
        }
    }
    Ok((takes_ctx, params))
}

fn expand(args: TokenStream2, mut item: ItemImpl) -> syn::Result<TokenStream2> {
    let args = parse_args(args)?;
    if let Some((_, path, _)) = &item.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "#[entity] goes on an inherent `impl Type { ... }` block",
        ));
    }
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(
            item.generics.span(),
            "entity types cannot be generic",
        ));
    }
    let self_ty = item.self_ty.clone();
    let type_name = match (&args.name, self_ty.as_ref()) {
        (Some(lit), _) => lit.value(),
        (None, Type::Path(p)) => match p.path.segments.last() {
            Some(seg) => seg.ident.to_string(),
            None => return Err(syn::Error::new(self_ty.span(), "cannot name this type")),
        },
        (None, _) => {
            return Err(syn::Error::new(
                self_ty.span(),
                "cannot name this type; use #[entity(name = \"...\")]",
            ))
        }
    };

    let mut methods = Vec::new();
    let mut hooks = Vec::new();
    let mut migrate_cfgs: Option<Vec<syn::Attribute>> = None;

    for it in item.items.iter_mut() {
        let ImplItem::Fn(f) = it else { continue };
        let marker = take_marker(f)?;
        let name = f.sig.ident.clone();
        let name_str = name.to_string();
        let has_self = matches!(f.sig.inputs.first(), Some(FnArg::Receiver(_)));
        // `#[cfg(...)]` on a method also guards what we generate for it.
        let cfgs: Vec<syn::Attribute> = f
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .cloned()
            .collect();

        if name_str == "migrate" && !has_self {
            if let Some((_, span)) = marker {
                return Err(syn::Error::new(span, "`migrate` is not an RPC method"));
            }
            migrate_cfgs = Some(cfgs);
            continue;
        }
        if !has_self {
            if let Some((_, span)) = marker {
                return Err(syn::Error::new(
                    span,
                    "only methods taking `&self` / `&mut self` can be RPC methods",
                ));
            }
            continue;
        }
        if let Some(&(_, arity)) = HOOKS.iter().find(|(h, _)| *h == name_str) {
            if let Some((_, span)) = marker {
                return Err(syn::Error::new(
                    span,
                    "lifecycle hooks are called by the host, not by RPC; remove the attribute",
                ));
            }
            let (takes_ctx, params) = split_params(f)?;
            if params.len() != arity {
                let msg = match arity {
                    0 => "this hook takes `&mut self` and optionally `ctx: &mut Ctx`".to_owned(),
                    _ => format!(
                        "this hook takes `&mut self`, optionally `ctx: &mut Ctx`, and {arity} \
                         argument(s) (see the `Entity` trait)"
                    ),
                };
                return Err(syn::Error::new(f.sig.inputs.span(), msg));
            }
            hooks.push(HookFn {
                name,
                cfgs,
                takes_ctx,
                params,
                returns_unit: returns_unit(&f.sig.output),
            });
            continue;
        }
        let exposure = match marker.as_ref().map(|(m, _)| m.as_str()) {
            Some("helper") => continue,
            Some("own_client") => "OwnClient",
            Some("all_clients") => "AllClients",
            _ => "Server",
        };
        if f.sig.asyncness.is_some() {
            return Err(syn::Error::new(
                f.sig.span(),
                "entity methods cannot be async",
            ));
        }
        if !f.sig.generics.params.is_empty() {
            return Err(syn::Error::new(
                f.sig.generics.span(),
                "RPC methods cannot be generic",
            ));
        }
        let (takes_ctx, params) = split_params(f)?;
        methods.push(Method {
            name,
            cfgs,
            exposure,
            takes_ctx,
            params,
            returns_unit: returns_unit(&f.sig.output),
        });
    }

    let attr_specs = args.attrs.iter().map(|(name, flags)| {
        let flags = flags.iter().map(|f| format_ident!("{}", f));
        quote! {
            ::wyrm_sdk::AttrSpec {
                name: #name,
                flags: ::wyrm_sdk::AttrFlags::empty() #(.union(::wyrm_sdk::AttrFlags::#flags))*,
            }
        }
    });
    let method_specs = methods.iter().map(|m| {
        let name = m.name.to_string();
        let exposure = format_ident!("{}", m.exposure);
        let cfgs = &m.cfgs;
        quote! {
            #(#cfgs)*
            ::wyrm_sdk::MethodSpec { name: #name, exposure: ::wyrm_sdk::Exposure::#exposure }
        }
    });

    let arms = methods.iter().map(|m| {
        let name = &m.name;
        let name_str = name.to_string();
        let span = name.span();
        let vars: Vec<_> = (0..m.params.len())
            .map(|i| format_ident!("__wyrm_arg{}", i))
            .collect();
        let tys = &m.params;
        let count = m.params.len();
        let decode = if count == 0 {
            quote! { ::wyrm_sdk::__private::decode_no_args(__wyrm_args, #type_name, #name_str)?; }
        } else {
            quote! {
                let (#(#vars,)*): (#(#tys,)*) =
                    ::wyrm_sdk::__private::decode_args(__wyrm_args, #count, #type_name, #name_str)?;
            }
        };
        let ctx_arg = if m.takes_ctx {
            quote! { __wyrm_ctx, }
        } else {
            quote! {}
        };
        let invoke = quote_spanned! {span=> <Self>::#name(self, #ctx_arg #(#vars),*) };
        let run = if m.returns_unit {
            quote! { #invoke; ::core::result::Result::Ok(()) }
        } else {
            quote! { ::wyrm_sdk::IntoCallResult::into_call_result(#invoke) }
        };
        let cfgs = &m.cfgs;
        quote! {
            #(#cfgs)*
            #name_str => {
                #decode
                #run
            }
        }
    });

    let hook_fns = hooks.iter().map(|h| {
        let name = &h.name;
        let vars: Vec<_> = (0..h.params.len())
            .map(|i| format_ident!("__wyrm_arg{}", i))
            .collect();
        let tys = &h.params;
        let ctx_arg = if h.takes_ctx {
            quote! { __wyrm_ctx, }
        } else {
            quote! {}
        };
        let invoke = quote! { <Self>::#name(self, #ctx_arg #(#vars),*) };
        let run = if h.returns_unit {
            quote! { #invoke; ::core::result::Result::Ok(()) }
        } else {
            quote! { ::wyrm_sdk::IntoCallResult::into_call_result(#invoke) }
        };
        let cfgs = &h.cfgs;
        quote! {
            #(#cfgs)*
            #[allow(unused_variables)]
            fn #name(&mut self, __wyrm_ctx: &mut ::wyrm_sdk::Ctx #(, #vars: #tys)*) -> ::core::result::Result<(), ::std::string::String> {
                #run
            }
        }
    });

    let migrate_fn = if let Some(cfgs) = migrate_cfgs {
        quote! {
            #(#cfgs)*
            fn migrate(from_version: &str, data: &[u8]) -> ::core::result::Result<Self, ::std::string::String> {
                <Self>::migrate(from_version, data)
            }
        }
    } else {
        quote! {}
    };

    let wants_events = hooks
        .iter()
        .any(|h| h.name == "on_aoi_enter" || h.name == "on_aoi_leave");
    let aoi_spec = match &args.aoi {
        Some((radius, hysteresis)) => quote! {
            ::core::option::Option::Some(::wyrm_sdk::AoiSpec {
                radius: (#radius) as f32,
                hysteresis: (#hysteresis) as f32,
                events: #wants_events,
            })
        },
        None if wants_events => {
            return Err(syn::Error::new(
                self_ty.span(),
                "`on_aoi_enter` / `on_aoi_leave` need an area of interest: \
                 #[entity(aoi(radius = .., hysteresis = ..))]",
            ))
        }
        None => quote! { ::core::option::Option::None },
    };

    Ok(quote! {
        #item

        impl ::wyrm_sdk::Entity for #self_ty {
            const TYPE_NAME: &'static str = #type_name;
            const ATTRS: &'static [::wyrm_sdk::AttrSpec] = &[#(#attr_specs),*];
            const METHODS: &'static [::wyrm_sdk::MethodSpec] = &[#(#method_specs),*];
            const AOI: ::core::option::Option<::wyrm_sdk::AoiSpec> = #aoi_spec;

            #[allow(unused_variables, clippy::let_unit_value, clippy::unit_arg)]
            fn dispatch(
                &mut self,
                __wyrm_ctx: &mut ::wyrm_sdk::Ctx,
                __wyrm_method: &str,
                __wyrm_args: &[u8],
            ) -> ::core::result::Result<(), ::std::string::String> {
                match __wyrm_method {
                    #(#arms)*
                    _ => ::core::result::Result::Err(
                        ::wyrm_sdk::__private::unknown_method(#type_name, __wyrm_method),
                    ),
                }
            }

            #(#hook_fns)*
            #migrate_fn
        }
    })
}
