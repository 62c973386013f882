//! Every reader of a vendor's or a destination's own settings (the PBX vendors of `pbx/`, the
//! destinations of `jobs/`), and the configuration read with all of them: the configuration
//! itself knows none of them by name.

use std::path::Path;

use crate::config::{Config, ConfigError, Env, Reader, DEMO_CONFIG};

/// The readers.
pub fn readers() -> Vec<&'static dyn Reader> {
    let mut all: Vec<&'static dyn Reader> = crate::pbx::VENDORS.to_vec();
    all.extend(crate::jobs::registry::HANDLERS.iter().filter_map(|h| h.reader()));
    all
}

impl Config {
    /// Reads and validates `path`, then applies the environment overrides.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        Config::load_with(path, env, &readers())
    }

    /// Parses and validates TOML text; `source` names it in errors.
    pub fn parse(text: &str, source: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        Config::parse_with(text, source, env, &readers())
    }

    /// The built-in demo configuration, with the environment overrides.
    pub fn demo(env: &dyn Env) -> Result<Config, ConfigError> {
        Config::parse(DEMO_CONFIG, "built-in demo configuration", env)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::{Config, Place};

    const EXAMPLE: &str = include_str!("../callpool.example.toml");

    /// The settings a table accepts, as the schema's refusal of an unknown one lists them:
    /// `probe` makes the example hold `zz_probe` in that table.
    fn accepted(what: &str, probe: &str) -> Vec<String> {
        let e = Config::parse(probe, "probe.toml", &HashMap::new()).expect_err(what);
        let problem = e.problems.iter().find(|p| p.contains("`zz_probe`")).unwrap_or_else(|| {
            panic!("{what}: an unknown setting is not refused with the list of known ones: {:?}", e.problems)
        });
        let list = problem.split("`zz_probe`").nth(1).unwrap_or_default();
        list.split('`').skip(1).step_by(2).map(str::to_owned).collect()
    }

    /// The fields of `struct name` in `source` (for the tables whose unknown keys go to another
    /// reader, so that serde cannot list them).
    fn fields(source: &str, name: &str) -> Vec<String> {
        let body = source.split(&format!("struct {name} {{")).nth(1).expect(name).split("\n}").next().unwrap();
        let mut out = Vec::new();
        let mut skip = false;
        for line in body.lines().map(str::trim) {
            if line.starts_with("#[serde(flatten)]") || line.starts_with("#[serde(skip)]") {
                skip = true;
            } else if let Some((field, _)) =
                line.split_once(':').filter(|_| !line.starts_with("//") && !line.starts_with('#'))
            {
                let field = field.trim_start_matches("pub ").trim();
                if !std::mem::take(&mut skip) && !field.contains(' ') {
                    out.push(field.to_owned());
                }
            }
        }
        out
    }

    /// The lines of the example from its header `header` (commented out or not) to the next.
    fn region(header: &str) -> String {
        let is_header = |l: &str| {
            let l = l.trim_start_matches('#').trim();
            l.starts_with('[') && l.ends_with(']') && !l.contains(' ')
        };
        let lines: Vec<&str> = EXAMPLE.lines().collect();
        let start = lines
            .iter()
            .position(|l| is_header(l) && l.trim_start_matches('#').trim() == header)
            .unwrap_or_else(|| panic!("the example has no {header} table"));
        let end = lines[start + 1..].iter().position(|l| is_header(l)).map_or(lines.len(), |i| start + 1 + i);
        lines[start..end].join("\n")
    }

    /// The example says what each setting the schema accepts is for: `name = ` appears in the part
    /// of the example about its table (as a setting, a commented-out one, or in its prose).
    #[test]
    fn the_example_documents_every_setting() {
        let pbxs = {
            let from = EXAMPLE.find("\n[[pbx]]").unwrap();
            &EXAMPLE[from..EXAMPLE.find("\n[[site]]").unwrap()]
        };
        let callback = region("[site.callback]");
        let trigger_line = EXAMPLE.lines().find(|l| l.starts_with("trigger = {")).expect("the example's trigger");
        // Appended at the end, a table lands in the last site, the example's only one.
        let at_end = |table: &str| format!("{EXAMPLE}\n{table}\nzz_probe = 1\n");
        let mut tables: Vec<(String, Vec<String>, String)> = Vec::new();
        for t in ["server", "store", "bus", "pool", "analytics"] {
            let header = format!("[{t}]");
            let probe = EXAMPLE.replacen(&format!("{header}\n"), &format!("{header}\nzz_probe = 1\n"), 1);
            tables.push((header.clone(), accepted(&header, &probe), region(&header)));
        }
        let site = EXAMPLE.find("\n[[site]]").unwrap();
        let site_part = &EXAMPLE[site..EXAMPLE.find("\n# [site.ga4]").unwrap()];
        tables.push(("[[site]]".into(), fields(include_str!("config/site.rs"), "RawSite"), site_part.to_owned()));
        tables.push((
            "[site.callback]".into(),
            fields(include_str!("config/callback.rs"), "RawCallback"),
            callback.clone(),
        ));
        let limits = EXAMPLE.replacen("limits = { ", "limits = { zz_probe = 1, ", 1);
        tables.push(("[site.callback] limits".into(), accepted("limits", &limits), callback.clone()));
        tables.push(("[[pbx]]".into(), fields(include_str!("config/pbx.rs"), "RawPbx"), pbxs.to_owned()));
        for r in super::readers() {
            let (what, probe, documented) = match r.place() {
                // An array of tables (`[[site.webhooks]]`) or a table.
                Place::Site(name) if EXAMPLE.contains(&format!("[[site.{name}]]")) => {
                    let header = format!("[[site.{name}]]");
                    (header.clone(), at_end(&header), region(&header))
                }
                Place::Site(name) => {
                    (format!("[site.{name}]"), at_end(&format!("[site.{name}]")), region(&format!("[site.{name}]")))
                }
                Place::Callback(name) => {
                    (format!("[site.callback] {name}"), at_end(&format!("[site.callback.{name}]")), callback.clone())
                }
                Place::Pbx(kind) => (
                    format!("[[pbx]] kind = {kind:?}"),
                    format!("{EXAMPLE}\n[[pbx]]\nid = \"probe\"\nkind = {kind:?}\nzz_probe = 1\n"),
                    pbxs.to_owned(),
                ),
                Place::Trigger(kind) => (
                    format!("trigger kind = {kind:?}"),
                    EXAMPLE.replacen(trigger_line, &format!("trigger = {{ kind = {kind:?}, zz_probe = 1 }}"), 1),
                    callback.clone(),
                ),
            };
            tables.push((what.clone(), accepted(&what, &probe), documented));
        }
        // Accepted only to be refused with advice (name the key's file with `_path`).
        let refused = ["redis_client_key", "amqp_client_key"];
        let mut undocumented = Vec::new();
        for (table, names, documented) in &tables {
            // A vendor may have no settings of its own (Sipuni: the token every PBX may have).
            assert!(!names.is_empty() || table.starts_with("[[pbx]] kind"), "{table}: no settings found");
            for name in names.iter().filter(|n| !refused.contains(&n.as_str())) {
                // `name = `, or its secret file `name_file = `; a site's table is documented by its header.
                let said = [name.clone(), format!("{name}_file")].iter().any(|name| {
                    documented.match_indices(name.as_str()).any(|(i, _)| {
                        let before =
                            documented[..i].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
                        before && documented[i + name.len()..].trim_start().starts_with('=')
                    })
                }) || EXAMPLE.contains(&format!("[site.{name}]"));
                if !said {
                    undocumented.push(format!("{table}: {name}"));
                }
            }
        }
        assert!(undocumented.is_empty(), "settings callpool.example.toml does not document: {undocumented:#?}");
    }

    #[test]
    fn every_place_has_one_reader() {
        let mut places: Vec<_> = super::readers().iter().map(|r| format!("{:?}", r.place())).collect();
        let n = places.len();
        places.sort();
        places.dedup();
        assert_eq!(places.len(), n, "two readers of one place: {places:?}");
    }
}
