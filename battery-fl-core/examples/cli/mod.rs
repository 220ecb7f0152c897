//! What the example programs share: value parsers for their clap arguments, and the mean
//! and spread of their tables.

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

/// Mean and sample standard deviation (0 for a single value) of a table's per-seed values.
#[allow(dead_code)]
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let ss = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
    (mean, (ss / (n - 1.0).max(1.0)).sqrt())
}
