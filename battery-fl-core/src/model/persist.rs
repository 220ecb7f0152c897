//! Model files: safetensors weights plus a JSON description (architecture, label transform,
//! featurizer settings). Readable without libtorch; a PyTorch user opens the weights with the
//! `safetensors` package (`safetensors.torch.load_file`).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::config::{BatLiNetConfig, Geometry};
use super::dataset::InputScales;
use super::labels::LabelTransform;
use super::params::ModelParams;
use crate::error::{Error, Result};
use crate::features::FeaturizerConfig;

/// File-format tag written into every model description.
pub const FORMAT: &str = "battery-fl/batlinet/v1";
/// Weights file name inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Description file name inside a model directory.
pub const CONFIG_FILE: &str = "model.json";

/// The JSON half of a saved model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDescription {
    /// Always [`FORMAT`].
    pub format: String,
    /// Architecture and training settings.
    pub config: BatLiNetConfig,
    /// How inputs must be featurized.
    pub featurizer: FeaturizerConfig,
    /// Input block shape (channels, cycles, grid points).
    pub input_shape: [usize; 3],
    /// Layer geometry derived from the input shape.
    pub geometry: Geometry,
    /// Label transform, when the model was fitted.
    pub label_transform: Option<LabelTransform>,
    /// Per-channel input scales, when the model was fitted.
    #[serde(default)]
    pub input_scales: Option<InputScales>,
}

impl ModelDescription {
    /// Check internal consistency (format tag, config, input shape matches the config and
    /// the featurizer, geometry matches the input shape).
    pub fn validate(&self) -> Result<()> {
        if self.format != FORMAT {
            return Err(Error::Model {
                reason: format!(
                    "unknown model format {:?}, expected {FORMAT:?}",
                    self.format
                ),
            });
        }
        self.config.validate()?;
        self.featurizer.validate()?;
        if self.input_shape[0] != self.config.input_channels.len() {
            return Err(Error::Shape {
                what: "input channels vs config.input_channels".into(),
                expected: vec![self.config.input_channels.len()],
                got: vec![self.input_shape[0]],
            });
        }
        let (cycles, grid) = (self.featurizer.cycles, self.featurizer.interp_dim);
        if self.input_shape[1..] != [cycles, grid] {
            return Err(Error::Shape {
                what: "input (cycles, grid points) vs the featurizer's".into(),
                expected: vec![cycles, grid],
                got: self.input_shape[1..].to_vec(),
            });
        }
        let g = Geometry::new(
            self.input_shape[1],
            self.input_shape[2],
            self.config.kernel,
            self.config.pool,
        )?;
        if g != self.geometry {
            return Err(Error::Model {
                reason: format!(
                    "geometry {:?} does not match input shape {:?}",
                    self.geometry, self.input_shape
                ),
            });
        }
        Ok(())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `bytes` to `path` atomically and durably.
///
/// The bytes go to a uniquely named temporary file in the same directory (so concurrent
/// writers of one path never share a temporary file), which is fsynced, renamed over `path`,
/// and then the directory is fsynced so the rename itself survives a crash. Readers and a
/// crash see either the old file or the new one, never a mix; on failure the old file is left
/// untouched and the temporary file is removed.
///
/// # Errors
/// [`Error::Io`] naming `path` when the temporary file cannot be created, written or synced,
/// when the rename fails (e.g. `path` is a directory) or when the directory cannot be synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] with the content produced by `write` into the temporary file.
fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"),
    })?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        // as `File::create`: 0o666 restricted by the umask (tempfile defaults to 0o600)
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let result = (|| {
        // dropped (and so deleted) on every error path
        let mut tmp = builder.tempfile_in(dir)?;
        write(tmp.as_file_mut())?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        sync_dir(dir)
    })();
    result.map_err(io(path))
}

/// Fsync a directory so a rename inside it is durable. File systems that cannot sync
/// directories (`EINVAL`) are tolerated; elsewhere this is a no-op.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Serialize weights as safetensors (F32, names as in a PyTorch `state_dict`).
pub fn params_to_safetensors(params: &ModelParams) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = params
        .params()
        .iter()
        .map(|p| p.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = params
        .params()
        .iter()
        .zip(&bytes)
        .map(|(p, b)| {
            TensorView::new(Dtype::F32, p.shape.clone(), b)
                .map(|v| (p.name.clone(), v))
                .map_err(|e| Error::Model {
                    reason: format!("safetensors view of {}: {e}", p.name),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), FORMAT.to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Model {
        reason: format!("safetensors: {e}"),
    })
}

/// Parse safetensors bytes (F32 tensors only) into `ModelParams`.
pub fn params_from_safetensors(bytes: &[u8]) -> Result<ModelParams> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Model {
        reason: format!("safetensors: {e}"),
    })?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(Error::Model {
                reason: format!("tensor {name} has dtype {:?}, expected F32", view.dtype()),
            });
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.push((name, view.shape().to_vec(), data));
    }
    ModelParams::new(out)
}

/// Write `value` as pretty JSON to `path`, atomically.
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &json)
}

/// Read JSON from `path`: [`Error::Io`] when it cannot be read, [`Error::Parse`] when it is
/// not a `T`.
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// [`Error::Parse`] unless a saved file's `format` tag is `expected`.
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
pub fn check_format(path: &Path, format: &str, expected: &str) -> Result<()> {
    if format == expected {
        return Ok(());
    }
    Err(Error::Parse {
        path: path.to_path_buf(),
        reason: format!("format {format:?}, expected {expected:?}"),
    })
}

/// Save a model directory: `model.json` and `model.safetensors`, each written atomically.
pub fn save_model_dir(
    dir: &Path,
    description: &ModelDescription,
    params: &ModelParams,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = serde_json::to_vec_pretty(description).map_err(|e| Error::Parse {
        path: dir.join(CONFIG_FILE),
        reason: e.to_string(),
    })?;
    write_atomic(&dir.join(WEIGHTS_FILE), &params_to_safetensors(params)?)?;
    write_atomic(&dir.join(CONFIG_FILE), &json)
}

/// Load a model directory written by [`save_model_dir`]; the description is validated.
pub fn load_model_dir(dir: &Path) -> Result<(ModelDescription, ModelParams)> {
    let cfg = dir.join(CONFIG_FILE);
    let text = std::fs::read(&cfg).map_err(io(&cfg))?;
    let description: ModelDescription =
        serde_json::from_slice(&text).map_err(|e| Error::Parse {
            path: cfg.clone(),
            reason: e.to_string(),
        })?;
    description.validate()?;
    let weights = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights).map_err(io(&weights))?;
    Ok((description, params_from_safetensors(&bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_input_shape_must_match_config_and_featurizer() -> Result<()> {
        let config = BatLiNetConfig::default().with_input_channels(vec![1, 4]);
        let featurizer = FeaturizerConfig::default()
            .with_cycles(12)
            .with_interp_dim(9);
        let described = |input_shape: [usize; 3]| -> Result<ModelDescription> {
            Ok(ModelDescription {
                format: FORMAT.into(),
                config: config.clone(),
                featurizer: featurizer.clone(),
                input_shape,
                geometry: Geometry::new(
                    input_shape[1],
                    input_shape[2],
                    config.kernel,
                    config.pool,
                )?,
                label_transform: None,
                input_scales: None,
            })
        };
        described([2, 12, 9])?.validate()?;
        for wrong in [[1, 12, 9], [2, 11, 9], [2, 12, 10]] {
            assert!(
                matches!(described(wrong)?.validate(), Err(Error::Shape { .. })),
                "{wrong:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn safetensors_round_trip_and_garbage() {
        let p = ModelParams::new(vec![
            ("head.weight".into(), vec![1, 3], vec![0.5, -1.0, 2.0]),
            ("branch_a.conv1.bias".into(), vec![2], vec![1.0, 0.25]),
        ])
        .unwrap();
        let bytes = params_to_safetensors(&p).unwrap();
        assert_eq!(params_from_safetensors(&bytes).unwrap(), p);
        assert!(matches!(
            params_from_safetensors(&bytes[..bytes.len() / 2]),
            Err(Error::Model { .. })
        ));
        assert!(matches!(
            params_from_safetensors(b"not a model"),
            Err(Error::Model { .. })
        ));
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn failed_write_keeps_the_old_file_and_no_temporary() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt.json");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"half of the new")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(
            matches!(&err, Error::Io { path: p, .. } if *p == path),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["ckpt.json"]);
    }

    #[test]
    fn rewrites_leave_only_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        write_atomic(&path, b"1").unwrap();
        write_atomic(&path, b"2").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"2");
        assert_eq!(entries(dir.path()), ["w.json"]);
        assert!(matches!(
            write_atomic(Path::new("/"), b"x"),
            Err(Error::Io { .. })
        ));
    }
}
