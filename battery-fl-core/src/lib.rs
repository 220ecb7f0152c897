//! # battery-fl-core
//!
//! Federated, privacy-preserving battery-lifetime prediction. Fleets keep their cycling data
//! at home; the model travels.
//!
//! - [`data`]: cells and cycles, loaders for the shared JSON schema (and BatteryML names),
//!   validation, cleaning, cycle-life labels, and seeded synthetic fleets.
//! - [`genome`]: genome fingerprints (what a cell is) with a distance and a k-nearest index.
//! - [`features`]: the BatLiNet difference-curve featurizer (six channels over normalized
//!   capacity; intra-cell and inter-cell differences; cleaning).
//! - [`runtime`]: the C allocator's policy while models train and predict (scoped).
//!
//! ## Quickstart
//!
//! ```
//! use battery_fl_core::data::synthetic::FleetConfig;
//! use battery_fl_core::features::{Featurizer, FeaturizerConfig};
//! use battery_fl_core::genome::GenomeFingerprint;
//!
//! // two small synthetic fleets, seeded
//! let fleets = FleetConfig::default().with_fleets(2).with_cells_per_fleet(3).generate()?;
//! let cell = &fleets[0].cells[0];
//!
//! // what the cell is ...
//! let fp = GenomeFingerprint::from_cell(cell)?;
//! assert_eq!(fp.distance(&fp), 0.0);
//!
//! // ... and its BatLiNet features: (6 channels, cycles, grid points)
//! let featurizer = Featurizer::new(FeaturizerConfig::default().with_cycles(20).with_interp_dim(100))?;
//! let x = featurizer.transform(cell)?;
//! assert_eq!(x.shape(), [6, 20, 100]);
//! # Ok::<(), battery_fl_core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod aggregate;
pub mod data;
pub mod dp;
mod error;
pub mod features;
pub mod federation;
pub mod genome;
pub mod model;
pub mod rng;
pub mod runtime;
pub mod secagg;

pub use error::{Error, ErrorKind, Result, UpdateRejection};
