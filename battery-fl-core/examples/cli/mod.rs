//! Value parsers the example programs' clap arguments share.

/// A list item, surrounding spaces ignored (`--seeds "42, 43"`).
#[allow(dead_code)]
pub fn trimmed<T: std::str::FromStr>(s: &str) -> Result<T, T::Err> {
    s.trim().parse()
}

/// A value named by its type's serde (snake_case) name, e.g. `fine_tune`.
#[allow(dead_code)]
pub fn serde_enum<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(s.into()))
}
