//! `ModelParams`: the tch-free exchange format of model weights.
//!
//! Everything that travels between fleets (aggregation, secure aggregation, differential
//! privacy) works on `ModelParams`: named `f32` buffers with shapes, kept in a deterministic
//! order (sorted by name), so federation code never needs libtorch.
//!
//! ```
//! use battery_fl_core::model::ModelParams;
//!
//! let p = ModelParams::new(vec![
//!     ("head.weight".into(), vec![1, 2], vec![0.5, -0.5]),
//!     ("conv.bias".into(), vec![2], vec![1.0, 2.0]),
//! ])?;
//! assert_eq!(p.names().collect::<Vec<_>>(), ["conv.bias", "head.weight"]);
//! assert_eq!(p.flatten(), vec![1.0, 2.0, 0.5, -0.5]);
//! let q = p.from_flat(&[0.0; 4])?;
//! assert_eq!(q.num_scalars(), 4);
//! assert!(p.from_flat(&[0.0; 3]).is_err());
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One named parameter tensor, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    /// Name, e.g. `branch_a.conv1.weight`.
    pub name: String,
    /// Shape; the product equals `data.len()`.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Named `f32` parameter buffers with shapes, sorted by name.
///
/// Deserialization runs the checks of [`ModelParams::new`] (each shape matches its data, names
/// are unique; the tensors are sorted by name), so a hand-edited or corrupt file cannot produce
/// inconsistent parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawModelParams")]
pub struct ModelParams {
    params: Vec<Param>,
}

/// The serialized form, before the checks of [`ModelParams::new`].
#[derive(Deserialize)]
struct RawModelParams {
    params: Vec<Param>,
}

impl TryFrom<RawModelParams> for ModelParams {
    type Error = Error;

    fn try_from(raw: RawModelParams) -> Result<Self> {
        Self::from_params(raw.params)
    }
}

impl ModelParams {
    /// Build from `(name, shape, data)` triples; checks that each shape matches its data and
    /// that names are unique, then sorts by name.
    pub fn new(params: Vec<(String, Vec<usize>, Vec<f32>)>) -> Result<Self> {
        Self::from_params(
            params
                .into_iter()
                .map(|(name, shape, data)| Param { name, shape, data })
                .collect(),
        )
    }

    fn from_params(mut params: Vec<Param>) -> Result<Self> {
        for p in &params {
            let n = p
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d));
            if n != Some(p.data.len()) {
                return Err(Error::Shape {
                    what: format!("parameter {}", p.name),
                    expected: p.shape.clone(),
                    got: vec![p.data.len()],
                });
            }
        }
        params.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = params.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::config(
                "params",
                format!("duplicate parameter name {}", w[0].name),
            ));
        }
        Ok(ModelParams { params })
    }

    /// The parameters, sorted by name.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Mutable access to the values (names and shapes stay fixed).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut [f32]> {
        self.params.iter_mut().map(|p| p.data.as_mut_slice())
    }

    /// Parameter names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Total number of scalars.
    pub fn num_scalars(&self) -> usize {
        self.params.iter().map(|p| p.data.len()).sum()
    }

    /// All values concatenated in order.
    pub fn flatten(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.num_scalars());
        for p in &self.params {
            out.extend_from_slice(&p.data);
        }
        out
    }

    /// A copy with the same names and shapes, filled from a flat vector.
    pub fn from_flat(&self, flat: &[f32]) -> Result<Self> {
        if flat.len() != self.num_scalars() {
            return Err(Error::Shape {
                what: "flat parameter vector".into(),
                expected: vec![self.num_scalars()],
                got: vec![flat.len()],
            });
        }
        let mut out = self.clone();
        let mut at = 0;
        for p in &mut out.params {
            let n = p.data.len();
            p.data.copy_from_slice(&flat[at..at + n]);
            at += n;
        }
        Ok(out)
    }

    /// A copy with every value set to zero.
    pub fn zeros_like(&self) -> Self {
        let mut out = self.clone();
        out.values_mut().for_each(|v| v.fill(0.0));
        out
    }

    /// Check that `other` has the same names and shapes, in the same order.
    pub fn check_compatible(&self, other: &Self) -> Result<()> {
        if self.params.len() != other.params.len() {
            return Err(Error::Shape {
                what: "number of parameter tensors".into(),
                expected: vec![self.params.len()],
                got: vec![other.params.len()],
            });
        }
        for (a, b) in self.params.iter().zip(&other.params) {
            if a.name != b.name {
                return Err(Error::config(
                    "params",
                    format!("expected parameter {}, got {}", a.name, b.name),
                ));
            }
            if a.shape != b.shape {
                return Err(Error::Shape {
                    what: format!("parameter {}", a.name),
                    expected: a.shape.clone(),
                    got: b.shape.clone(),
                });
            }
        }
        Ok(())
    }

    /// Euclidean norm over all values (accumulated in f64).
    pub fn l2_norm(&self) -> f64 {
        self.params
            .iter()
            .flat_map(|p| p.data.iter())
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt()
    }

    /// True when every value is finite.
    pub fn all_finite(&self) -> bool {
        self.params
            .iter()
            .all(|p| p.data.iter().all(|v| v.is_finite()))
    }

    /// `self - other` (e.g. a client's update relative to the global model).
    pub fn sub(&self, other: &Self) -> Result<Self> {
        self.zip_with(other, |a, b| a - b)
    }

    /// `self + other`.
    pub fn add(&self, other: &Self) -> Result<Self> {
        self.zip_with(other, |a, b| a + b)
    }

    /// Multiply every value by `factor`.
    pub fn scale(&mut self, factor: f32) {
        self.values_mut()
            .for_each(|v| v.iter_mut().for_each(|x| *x *= factor));
    }

    fn zip_with(&self, other: &Self, f: impl Fn(f32, f32) -> f32) -> Result<Self> {
        self.check_compatible(other)?;
        let mut out = self.clone();
        for (p, q) in out.params.iter_mut().zip(&other.params) {
            p.data
                .iter_mut()
                .zip(&q.data)
                .for_each(|(a, &b)| *a = f(*a, b));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> ModelParams {
        ModelParams::new(vec![
            ("b".into(), vec![2], vec![3.0, 4.0]),
            ("a".into(), vec![], vec![1.0]),
        ])
        .unwrap()
    }

    #[test]
    fn order_norm_and_arithmetic() {
        let p = two();
        assert_eq!(p.flatten(), vec![1.0, 3.0, 4.0]);
        assert!((p.l2_norm() - 26f64.sqrt()).abs() < 1e-12);
        let d = p.sub(&p.zeros_like()).unwrap();
        assert_eq!(d, p);
        let mut s = p.add(&p).unwrap();
        s.scale(0.5);
        assert_eq!(s, p);
    }

    #[test]
    fn mismatches_are_typed_errors() {
        assert!(matches!(
            ModelParams::new(vec![("x".into(), vec![2, 2], vec![0.0; 3])]),
            Err(Error::Shape { .. })
        ));
        assert!(ModelParams::new(vec![
            ("x".into(), vec![1], vec![0.0]),
            ("x".into(), vec![1], vec![0.0])
        ])
        .is_err());
        let other = ModelParams::new(vec![
            ("a".into(), vec![], vec![1.0]),
            ("b".into(), vec![1, 2], vec![0.0; 2]),
        ])
        .unwrap();
        assert!(matches!(
            two().check_compatible(&other),
            Err(Error::Shape { .. })
        ));
        assert!(two().sub(&other).is_err());
    }

    #[test]
    fn deserialization_runs_the_constructor_checks() {
        let p: ModelParams = serde_json::from_str(
            r#"{"params":[{"name":"b","shape":[2],"data":[3,4]},{"name":"a","shape":[],"data":[1]}]}"#,
        )
        .unwrap();
        assert_eq!(p, two());
        for bad in [
            r#"{"params":[{"name":"w","shape":[2,2],"data":[1,2,3]}]}"#,
            r#"{"params":[{"name":"w","shape":[],"data":[]}]}"#,
            r#"{"params":[{"name":"w","shape":[18446744073709551615,2],"data":[]}]}"#,
            r#"{"params":[{"name":"w","shape":[1],"data":[1]},{"name":"w","shape":[1],"data":[1]}]}"#,
        ] {
            let err = serde_json::from_str::<ModelParams>(bad).unwrap_err();
            assert!(err.to_string().contains("parameter"), "{bad}: {err}");
        }
    }
}
