//! The crate's one integration-test binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod data;
mod genome;
mod synthetic;
mod features;
mod aggregate;
mod dp;
mod secagg;
#[cfg(feature = "tch")]
mod model;
#[cfg(feature = "tch")]
mod federation;
