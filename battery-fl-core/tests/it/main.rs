//! The crate's one integration-test binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aggregate;
mod checkpoint;
mod ci;
mod common;
mod data;
mod dp;
#[cfg(feature = "tch")]
mod dpsgd;
mod features;
#[cfg(feature = "tch")]
mod federation;
#[cfg(feature = "tch")]
mod federation_intervals;
#[cfg(feature = "tch")]
mod federation_personal;
#[cfg(feature = "tch")]
mod federation_private;
mod genome;
#[cfg(feature = "tch")]
mod hybrid;
#[cfg(feature = "tch")]
mod intervals;
mod linear;
mod linear_privacy;
#[cfg(feature = "tch")]
mod main_job;
#[cfg(feature = "tch")]
mod model;
mod secagg;
mod synthetic;
