//! `wyrm new`: a plugin project that builds and loads as it is, in any
//! language Wyrm builds.
//!
//! Every project has the same shape whatever its language: a `Player`
//! entity that every connecting client is bound to, with a `hello(name)`
//! method that answers `on_hello(greeting, count)`, the count kept in
//! private state (so it survives a swap); a `wyrm.toml` that serves it; a
//! `.gitignore` for build output. Templates are compiled into this binary.

use std::path::Path;

use anyhow::{bail, Context as _};

use crate::Language;

/// A file of a template: its path in the project and its text, with
/// `{{name}}`, `{{language}}` and `{{sdk_path}}` to fill in.
type TemplateFile = (&'static str, &'static str);

const COMMON: [TemplateFile; 2] = [
    ("wyrm.toml", include_str!("../templates/common/wyrm.toml")),
    (".gitignore", include_str!("../templates/common/gitignore")),
];

fn files(lang: Language) -> &'static [TemplateFile] {
    match lang {
        Language::Rust => &[
            ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
            // The versions this repository is tested with; cargo drops what
            // the plugin does not use.
            ("Cargo.lock", include_str!("../../Cargo.lock")),
            ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
        ],
        Language::JavaScript => &[
            ("package.json", include_str!("../templates/js/package.json")),
            ("plugin.js", include_str!("../templates/js/plugin.js")),
        ],
        Language::Python => &[("app.py", include_str!("../templates/python/app.py"))],
        Language::C => &[("plugin.c", include_str!("../templates/c/plugin.c"))],
    }
}

/// Whether `name` can name a plugin in every language: a lowercase ASCII
/// letter, then lowercase letters, digits, `-` or `_`, at most 64 in all.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 64
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'))
}

/// Creates a new plugin project in `dir` (which must not exist, or be
/// empty), named after the folder, written in `lang`.
pub fn create(dir: &Path, lang: Language) -> anyhow::Result<()> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} does not end in a folder name", dir.display()))?;
    if !valid_name(name) {
        bail!(
            "{name:?} cannot name a plugin: use a lowercase letter, then lowercase letters, \
             digits, - or _ (at most 64)"
        );
    }
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("{} exists and is not a folder", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists and is not empty; pick a new folder",
                dir.display()
            );
        }
    }
    let templates = files(lang);
    // Rust projects depend on the SDK of the repository this binary was
    // built from.
    let sdk_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk-guest");
    let sdk_path = sdk_path.canonicalize().unwrap_or(sdk_path);
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{language}}", &lang.to_string())
            .replace("{{sdk_path}}", &sdk_path.to_string_lossy())
    };
    for (path, text) in COMMON.iter().chain(templates) {
        let dest = dir.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&dest, fill(text))
            .with_context(|| format!("cannot write {}", dest.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names() {
        assert!(valid_name("my-game_2"));
        assert!(!valid_name(""));
        assert!(!valid_name("2fast"));
        assert!(!valid_name("Game"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
