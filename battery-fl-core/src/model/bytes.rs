//! A whole model as one byte string (pickling, sending a model over a network), holding
//! exactly what [`BatLiNet::save`] writes to a directory.

use super::batlinet::BatLiNet;
use super::persist::{params_from_safetensors, params_to_safetensors, ModelDescription};
use crate::error::{Error, Result};

/// Magic prefix of [`BatLiNet::to_bytes`] (`"BFLM"` and the layout version 1).
const MAGIC: [u8; 5] = *b"BFLM\x01";

fn malformed(reason: impl Into<String>) -> Error {
    Error::Model {
        reason: format!("model bytes: {}", reason.into()),
    }
}

impl BatLiNet {
    /// The model as bytes: a magic prefix, the `model.json` description (u64 little-endian
    /// length, then JSON) and the `model.safetensors` weights. [`BatLiNet::from_bytes`] reads
    /// it back bit for bit.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(&self.description()).map_err(|e| malformed(e.to_string()))?;
        let weights = params_to_safetensors(&self.params()?)?;
        let mut out = Vec::with_capacity(MAGIC.len() + 8 + json.len() + weights.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&weights);
        Ok(out)
    }

    /// Read bytes written by [`BatLiNet::to_bytes`]. Truncated or foreign bytes give
    /// [`Error::Model`]; a description that does not validate gives its own error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let rest = bytes
            .strip_prefix(&MAGIC[..])
            .ok_or_else(|| malformed("not a battery-fl model"))?;
        let (len, rest) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| malformed("truncated header"))?;
        let len = usize::try_from(u64::from_le_bytes(*len))
            .ok()
            .filter(|&n| n <= rest.len())
            .ok_or_else(|| malformed("truncated description"))?;
        let (json, weights) = rest.split_at(len);
        let d: ModelDescription =
            serde_json::from_slice(json).map_err(|e| malformed(e.to_string()))?;
        d.validate()?;
        BatLiNet::from_description(d, &params_from_safetensors(weights)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::features::FeaturizerConfig;
    use crate::model::{BatLiNetConfig, InputScales, LabelTransform};

    fn small() -> BatLiNet {
        let f = FeaturizerConfig::default()
            .with_cycles(12)
            .with_interp_dim(9);
        let c = BatLiNetConfig::default()
            .with_input_channels(vec![1, 4])
            .with_conv_channels(3)
            .with_seed(5);
        BatLiNet::new(c, f).unwrap()
    }

    #[test]
    fn round_trip_is_exact_and_garbage_is_a_model_error() {
        let mut m = small();
        let mut labels = LabelTransform::new(6.5, 0.4);
        labels.groups[1] = Some(crate::model::LabelMoments {
            mean: 7.5,
            std: 0.3,
        });
        m.set_label_transform(labels);
        m.set_input_scales(InputScales {
            branch_a: vec![0.5, 2.0],
            branch_b: vec![1.5, 3.0],
        })
        .unwrap();
        let bytes = m.to_bytes().unwrap();
        let back = BatLiNet::from_bytes(&bytes).unwrap();
        assert_eq!(back.params().unwrap(), m.params().unwrap());
        assert_eq!(back.label_transform(), m.label_transform());
        assert_eq!(back.input_scales(), m.input_scales());
        assert_eq!(back.config(), m.config());
        assert_eq!(back.featurizer_config(), m.featurizer_config());
        assert_eq!(back.to_bytes().unwrap(), bytes);
        // an untrained model (no label transform, no scales) round-trips too
        let fresh = small();
        let back = BatLiNet::from_bytes(&fresh.to_bytes().unwrap()).unwrap();
        assert_eq!(back.label_transform(), None);
        assert_eq!(back.params().unwrap(), fresh.params().unwrap());

        for bad in [
            &b""[..],
            b"not a model",
            &bytes[..MAGIC.len() + 4],
            &bytes[..MAGIC.len() + 8 + 3],
            &bytes[..bytes.len() - 5],
        ] {
            assert!(
                matches!(BatLiNet::from_bytes(bad), Err(Error::Model { .. })),
                "{} bytes",
                bad.len()
            );
        }
    }
}
