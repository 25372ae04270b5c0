//! The layers of a configuration: TOML documents merged over the embedded defaults, then
//! `IMLOGIN__SECTION__KEY` environment variables applied over them.

use super::{key_err, ConfigError, ENV_PREFIX};

pub(super) fn parse_toml(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.message().to_owned(),
        })
}

/// Deep-merges tables; any other value (arrays included, so `[[apps]]` replaces the demo app) is replaced.
pub(super) fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Applies `IMLOGIN__SECTION__KEY=value`. A numeric segment indexes an array (`IMLOGIN__APPS__0__SECRET_KEY`);
/// the index one past the end appends a new table. The value is read as a TOML value (number, bool, array)
/// unless the key it replaces holds a string, or it does not parse: then it is a string.
pub(super) fn apply_env(
    tree: &mut toml::Table,
    name: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let path: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let dotted = path.join(".");
    if path.iter().any(|s| s.is_empty()) {
        return Err(key_err(
            dotted,
            format!("environment variable {name} has an empty path segment"),
        ));
    }
    let mut node = TableOrArray::Table(tree);
    for (i, seg) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        let slot: &mut toml::Value = match node {
            TableOrArray::Table(t) => {
                if last {
                    let parsed = parse_env_value(value, t.get(seg));
                    t.insert(seg.clone(), parsed);
                    return Ok(());
                }
                t.entry(seg.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            TableOrArray::Array(a) => {
                let idx: usize = seg
                    .parse()
                    .map_err(|_| key_err(&dotted, format!("`{seg}` must be an array index")))?;
                if idx > a.len() {
                    return Err(key_err(
                        &dotted,
                        format!("index {idx} skips entries (array has {})", a.len()),
                    ));
                }
                if idx == a.len() {
                    a.push(toml::Value::Table(toml::Table::new()));
                }
                if last {
                    let parsed = parse_env_value(value, Some(&a[idx]));
                    a[idx] = parsed;
                    return Ok(());
                }
                &mut a[idx]
            }
        };
        node = match slot {
            toml::Value::Table(t) => TableOrArray::Table(t),
            toml::Value::Array(a) => TableOrArray::Array(a),
            _ => {
                return Err(key_err(
                    &dotted,
                    format!("`{seg}` is not a table, cannot set a key below it"),
                ))
            }
        };
    }
    Ok(())
}

enum TableOrArray<'a> {
    Table(&'a mut toml::Table),
    Array(&'a mut Vec<toml::Value>),
}

fn parse_env_value(raw: &str, current: Option<&toml::Value>) -> toml::Value {
    if matches!(current, Some(toml::Value::String(_))) {
        return toml::Value::String(raw.to_owned());
    }
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}
