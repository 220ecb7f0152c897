//! `BatLiNetConfig`: architecture and training settings, with the published defaults.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CPU (the default; deterministic for a seed).
    #[default]
    Cpu,
    /// The first CUDA device; an error when none is available.
    Cuda,
    /// CUDA when available, else CPU.
    Auto,
}

/// How branch B's references are chosen for each target cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceSelection {
    /// K references drawn at random from the reference set (as published).
    #[default]
    Random,
    /// The K references whose genome fingerprints are nearest to the target's. Training then
    /// draws each target's references from its K genome-nearest training cells too, and
    /// branch B's input scale comes from those pairs, so branch B learns the within-kind
    /// differences it is asked about (on multi-chemistry fleets, random pairs are mostly
    /// across chemistries). A model trained this way should predict with genome selection.
    Genome,
}

/// Which features branch B's target-minus-reference differences are formed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterFeatures {
    /// The cycle-filtered raw curves (as published): `x_target − x_reference`.
    #[default]
    Raw,
    /// The cycle differences that branch A sees (each cell's curves minus its own base
    /// cycle, cleaned): `(x_t − x_t[base]) − (x_r − x_r[base])`. Both branches then read one
    /// feature space, the setting in which the method's argument for a shared head is exact
    /// (fitting lives and fitting pair differences of lives have the same linear optimum),
    /// and cell-to-cell offsets that are the same in every cycle (manufacturing spread of
    /// capacity and resistance) cancel. A departure from the published code, for data whose
    /// raw curves carry little besides that spread, such as discharge-only V(Qd) (MATR).
    CycleDifference,
}

/// How the learning rate moves over a training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The configured rate at every step (as published).
    #[default]
    Constant,
    /// Cosine annealing from the configured rate at the first step to zero after the last
    /// (Loshchilov & Hutter 2017, without restarts): late steps, whose small random batches
    /// and reference draws make the gradient noisy, move the weights less.
    Cosine,
}

/// Architecture and training settings of BatLiNet (method.md section 3).
///
/// Defaults follow the published setup except `epochs`, which is far lower than the
/// published 1000 because a CPU step at full resolution takes seconds (method.md section 10);
/// choose input resolution (the featurizer's `interp_dim`) and epochs together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatLiNetConfig {
    /// Featurizer channels fed to the network (default all six, `[0, 1, 2, 3, 4, 5]`;
    /// discharge-only data such as MATR use `[1]`, the V(Qd) channel).
    pub input_channels: Vec<usize>,
    /// Convolution channels C (default 32).
    pub conv_channels: usize,
    /// Kernel size of the first two convolutions (default 3; shrinks to fit small inputs).
    pub kernel: usize,
    /// Average-pool size and stride (default 3; shrinks to fit small inputs).
    pub pool: usize,
    /// Weight of branch B in loss and prediction (default 0.5).
    pub alpha: f64,
    /// References per target during training (default 2).
    pub train_references: usize,
    /// References per target at inference (default 32).
    pub inference_references: usize,
    /// How references are chosen, in training and at inference (default random).
    pub selection: ReferenceSelection,
    /// AdamW learning rate (default 1e-3).
    pub learning_rate: f64,
    /// AdamW weight decay (default 0.01, PyTorch's AdamW default).
    pub weight_decay: f64,
    /// Training batch size (default 128).
    pub batch_size: usize,
    /// Training epochs (default 200; the published 1000 is GPU-sized).
    pub epochs: usize,
    /// Seed of initialization, batching and reference draws (default 0).
    pub seed: u64,
    /// Device (default CPU).
    pub device: DeviceChoice,
    /// Train and predict with branch A only: the single-branch CNN baseline (default false).
    pub single_branch: bool,
    /// Show a progress bar on a terminal (default true; never shown when not a terminal).
    pub progress: bool,
    /// Targets per inference batch; bounds memory whatever the number of targets and
    /// references (default 16).
    pub inference_batch: usize,
    /// Clean every target-minus-reference difference with the full cleaning (edge smoothing,
    /// glitch removal, cycle filter) before branch B, as the published code does (default
    /// false: each cell's raw curves are cycle-filtered once and differenced, which lets the
    /// first convolution be shared across pairs at inference). True costs one first
    /// convolution per pair at inference too.
    pub clean_pairs: bool,
    /// Features branch B differences (default raw curves, as published). Datasets must be
    /// built to match: [`Dataset::with_inter_features`](super::Dataset::with_inter_features).
    pub inter_features: InterFeatures,
    /// Learning-rate schedule (default constant, as published).
    pub lr_schedule: LrSchedule,
    /// Fraction of the final epochs whose end-of-epoch weights are averaged into the trained
    /// model (stochastic weight averaging, Izmailov et al. 2018); 0 keeps the last weights
    /// (default 0, as published). Must be in [0, 1).
    pub weight_averaging: f64,
    /// Whether cycle lives are normalized over all training cells (default, as published)
    /// or within each cathode chemistry of the genome ([`LabelGrouping`](super::LabelGrouping)).
    pub label_grouping: super::LabelGrouping,
}

impl Default for BatLiNetConfig {
    fn default() -> Self {
        BatLiNetConfig {
            input_channels: vec![0, 1, 2, 3, 4, 5],
            conv_channels: 32,
            kernel: 3,
            pool: 3,
            alpha: 0.5,
            train_references: 2,
            inference_references: 32,
            selection: ReferenceSelection::Random,
            learning_rate: 1e-3,
            weight_decay: 0.01,
            batch_size: 128,
            epochs: 200,
            seed: 0,
            device: DeviceChoice::Cpu,
            single_branch: false,
            progress: true,
            inference_batch: 16,
            clean_pairs: false,
            inter_features: InterFeatures::Raw,
            lr_schedule: LrSchedule::Constant,
            weight_averaging: 0.0,
            label_grouping: super::LabelGrouping::Pooled,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $field:ident: $ty:ty;)*) => {
        $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self { self.$field = value; self })*
    };
}

impl BatLiNetConfig {
    setters! {
        /// Set `input_channels`.
        with_input_channels: input_channels: Vec<usize>;
        /// Set `conv_channels`.
        with_conv_channels: conv_channels: usize;
        /// Set `alpha`.
        with_alpha: alpha: f64;
        /// Set `train_references`.
        with_train_references: train_references: usize;
        /// Set `inference_references`.
        with_inference_references: inference_references: usize;
        /// Set `selection`.
        with_selection: selection: ReferenceSelection;
        /// Set `learning_rate`.
        with_learning_rate: learning_rate: f64;
        /// Set `weight_decay`.
        with_weight_decay: weight_decay: f64;
        /// Set `batch_size`.
        with_batch_size: batch_size: usize;
        /// Set `epochs`.
        with_epochs: epochs: usize;
        /// Set `seed`.
        with_seed: seed: u64;
        /// Set `device`.
        with_device: device: DeviceChoice;
        /// Set `single_branch`.
        with_single_branch: single_branch: bool;
        /// Set `progress`.
        with_progress: progress: bool;
        /// Set `inference_batch`.
        with_inference_batch: inference_batch: usize;
        /// Set `clean_pairs`.
        with_clean_pairs: clean_pairs: bool;
        /// Set `inter_features`.
        with_inter_features: inter_features: InterFeatures;
        /// Set `lr_schedule`.
        with_lr_schedule: lr_schedule: LrSchedule;
        /// Set `weight_averaging`.
        with_weight_averaging: weight_averaging: f64;
        /// Set `label_grouping`.
        with_label_grouping: label_grouping: super::LabelGrouping;
    }

    /// Check every field.
    pub fn validate(&self) -> Result<()> {
        if self.input_channels.is_empty() || self.input_channels.iter().any(|&c| c >= 6) {
            return Err(Error::config(
                "input_channels",
                "need 1 to 6 channel indices, each < 6",
            ));
        }
        let mut sorted = self.input_channels.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.input_channels.len() {
            return Err(Error::config("input_channels", "channels must not repeat"));
        }
        let positive = [
            ("conv_channels", self.conv_channels),
            ("kernel", self.kernel),
            ("pool", self.pool),
            ("inference_references", self.inference_references),
            ("batch_size", self.batch_size),
            ("inference_batch", self.inference_batch),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::config(*field, "must be >= 1"));
        }
        if !self.single_branch && self.train_references == 0 {
            return Err(Error::config(
                "train_references",
                "must be >= 1 with two branches",
            ));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(Error::config(
                "alpha",
                format!("must be in [0, 1], got {}", self.alpha),
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(Error::config("learning_rate", "must be a positive number"));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(Error::config("weight_decay", "must be >= 0"));
        }
        if !(0.0..1.0).contains(&self.weight_averaging) {
            return Err(Error::config(
                "weight_averaging",
                format!("must be in [0, 1), got {}", self.weight_averaging),
            ));
        }
        Ok(())
    }

    /// Branch weight actually used: 0 for the single-branch baseline.
    pub fn effective_alpha(&self) -> f64 {
        if self.single_branch {
            0.0
        } else {
            self.alpha
        }
    }
}

/// Layer geometry for one input size: kernels and pools shrink to fit small inputs, and the
/// last convolution covers the whole remaining map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geometry {
    /// First convolution kernel (height, width).
    pub conv1: [usize; 2],
    /// First average pool (size = stride).
    pub pool1: [usize; 2],
    /// Second convolution kernel.
    pub conv2: [usize; 2],
    /// Second average pool.
    pub pool2: [usize; 2],
    /// Projection kernel: the whole remaining map.
    pub conv3: [usize; 2],
    /// Map size right after the first convolution.
    pub after_conv1: [usize; 2],
}

impl Geometry {
    /// Geometry for inputs of `height x width` (cycles x grid points).
    ///
    /// ```
    /// use battery_fl_core::model::Geometry;
    /// // the published full-resolution input: 100 cycles x 1000 points
    /// let g = Geometry::new(100, 1000, 3, 3)?;
    /// assert_eq!(g.conv3, [10, 110]);
    /// // tiny inputs shrink every kernel instead of failing
    /// assert_eq!(Geometry::new(2, 5, 3, 3)?.conv1, [2, 3]);
    /// # Ok::<(), battery_fl_core::Error>(())
    /// ```
    pub fn new(height: usize, width: usize, kernel: usize, pool: usize) -> Result<Self> {
        if height == 0 || width == 0 || kernel == 0 || pool == 0 {
            return Err(Error::config(
                "input shape",
                format!("need positive sizes, got {height}x{width}"),
            ));
        }
        let fit = |k: usize, [h, w]: [usize; 2]| [k.min(h), k.min(w)];
        let conv = |[h, w]: [usize; 2], [kh, kw]: [usize; 2]| [h - kh + 1, w - kw + 1];
        let pooled = |[h, w]: [usize; 2], [ph, pw]: [usize; 2]| [h / ph, w / pw];
        let conv1 = fit(kernel, [height, width]);
        let after_conv1 = conv([height, width], conv1);
        let pool1 = fit(pool, after_conv1);
        let m1 = pooled(after_conv1, pool1);
        let conv2 = fit(kernel, m1);
        let m2 = conv(m1, conv2);
        let pool2 = fit(pool, m2);
        let conv3 = pooled(m2, pool2);
        Ok(Geometry {
            conv1,
            pool1,
            conv2,
            pool2,
            conv3,
            after_conv1,
        })
    }

    /// Number of parameters of one branch with `c_in` input and `c` convolution channels.
    pub fn branch_parameters(&self, c_in: usize, c: usize) -> usize {
        let k = |[h, w]: [usize; 2]| h * w;
        c_in * c * k(self.conv1) + c + c * c * k(self.conv2) + c + c * c * k(self.conv3) + c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_published_ones_and_validate() {
        let c = BatLiNetConfig::default();
        c.validate().unwrap();
        assert_eq!(
            (c.conv_channels, c.train_references, c.inference_references),
            (32, 2, 32)
        );
        assert_eq!((c.alpha, c.learning_rate, c.batch_size), (0.5, 1e-3, 128));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<BatLiNetConfig>(&json).unwrap(), c);
        // partial JSON fills defaults
        let p: BatLiNetConfig = serde_json::from_str(r#"{"epochs": 3, "device": "auto"}"#).unwrap();
        assert_eq!((p.epochs, p.device, p.kernel), (3, DeviceChoice::Auto, 3));
    }

    #[test]
    fn published_architecture_has_the_published_size() {
        // method.md section 10: 2,274,912 parameters at (6, 100, 1000), C = 32
        let g = Geometry::new(100, 1000, 3, 3).unwrap();
        assert_eq!(2 * g.branch_parameters(6, 32) + 32, 2_274_912);
    }

    #[test]
    fn bad_values_name_the_field() {
        let field = |c: BatLiNetConfig| match c.validate() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let d = BatLiNetConfig::default;
        assert_eq!(field(d().with_alpha(1.5)), "alpha");
        assert_eq!(field(d().with_input_channels(vec![1, 1])), "input_channels");
        assert_eq!(field(d().with_input_channels(vec![6])), "input_channels");
        assert_eq!(field(d().with_batch_size(0)), "batch_size");
        assert_eq!(field(d().with_learning_rate(-1.0)), "learning_rate");
        assert_eq!(field(d().with_train_references(0)), "train_references");
        assert_eq!(field(d().with_weight_averaging(1.0)), "weight_averaging");
        assert_eq!(
            field(d().with_weight_averaging(f64::NAN)),
            "weight_averaging"
        );
        d().with_train_references(0)
            .with_single_branch(true)
            .validate()
            .unwrap();
    }
}
