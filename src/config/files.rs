//! Secrets from files: any setting whose name ends in `secret`, `token`, `password`, `salt` or
//! `key` may instead be given as `<name>_file = "/path"` (a systemd credential, a container
//! secret), and `secrets` as `secrets_file` (one secret per line). The file is read when the
//! configuration is, its last line break dropped; its content is never put in an error.

/// The names whose `_file` form is read.
const SECRET_SUFFIXES: [&str; 6] = ["secret", "secrets", "token", "password", "salt", "key"];

/// The longest secret file read (a secret is short; a wrong path must not load a disk image).
const MAX_FILE: u64 = 64 * 1024;

/// Replaces every `<secret>_file` in `table` (and the tables within it) with `<secret>` read from
/// the file; problems name the setting, and each file's text goes to `read_in` too. Returns
/// whether any was replaced.
pub(super) fn expand(table: &mut toml::Table, at: &str, problems: &mut Vec<String>, read_in: &mut Vec<String>) -> bool {
    let mut expanded = false;
    let file_keys: Vec<String> = table
        .keys()
        .filter(|k| k.strip_suffix("_file").is_some_and(|base| SECRET_SUFFIXES.iter().any(|s| base.ends_with(s))))
        .cloned()
        .collect();
    for key in file_keys {
        let base = &key[..key.len() - "_file".len()];
        let name = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
        let Some(toml::Value::String(path)) = table.remove(&key) else {
            problems.push(format!("{name}: a path to the file that holds the secret, as a string"));
            continue;
        };
        if table.contains_key(base) {
            problems.push(format!("{name}: give either {base} or {key}, not both"));
            continue;
        }
        let text = read(&path);
        if let Ok(text) = &text {
            read_in.push(text.clone());
        }
        match text {
            Ok(text) if base.ends_with("secrets") => {
                let lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
                table.insert(base.to_owned(), toml::Value::Array(lines.map(|l| l.to_owned().into()).collect()));
            }
            Ok(text) => {
                table.insert(base.to_owned(), toml::Value::String(text));
            }
            Err(why) => problems.push(format!("{name}: {path:?}: {why}")),
        }
        expanded = true;
    }
    for (key, value) in table.iter_mut() {
        let name = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
        match value {
            toml::Value::Table(t) => expanded |= expand(t, &name, problems, read_in),
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let toml::Value::Table(t) = item {
                        expanded |= expand(t, &format!("{name}[{i}]"), problems, read_in);
                    }
                }
            }
            _ => {}
        }
    }
    expanded
}

/// A secret file's text without its final line break.
fn read(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let mut text = String::new();
    file.take(MAX_FILE + 1).read_to_string(&mut text).map_err(|e| format!("cannot read it as text: {e}"))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("longer than {MAX_FILE} bytes: not a secret"));
    }
    let trimmed = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if trimmed.is_empty() {
        return Err("it is empty".into());
    }
    Ok(trimmed.to_owned())
}
