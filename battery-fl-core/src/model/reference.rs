//! Choosing inference references for each target: random (as published) or genome-nearest.

use rand::seq::index::sample;

use super::config::ReferenceSelection;
use super::dataset::Dataset;
use crate::error::{Error, Result};
use crate::genome::GenomeIndex;
use crate::rng::SeededRng;

/// For each target, `k` positions in `references` (never the target's own cell, matched by
/// id). With fewer eligible references than `k`, all eligible ones are used.
///
/// Random selection draws without replacement per target from `rng`; genome selection takes
/// the `k` references whose fingerprints are nearest to the target's.
pub fn select_references(
    targets: &Dataset,
    references: &Dataset,
    k: usize,
    selection: ReferenceSelection,
    rng: &mut SeededRng,
) -> Result<Vec<Vec<usize>>> {
    if references.is_empty() {
        return Err(Error::NotEnoughData {
            what: "inference references".into(),
            needed: 1,
            got: 0,
        });
    }
    let index = match selection {
        ReferenceSelection::Genome => Some(GenomeIndex::new(references.fingerprints().to_vec())),
        ReferenceSelection::Random => None,
    };
    (0..targets.len())
        .map(|t| {
            let own = &targets.cell_ids()[t];
            let eligible: Vec<usize> = (0..references.len())
                .filter(|&r| &references.cell_ids()[r] != own)
                .collect();
            if eligible.is_empty() {
                return Err(Error::NotEnoughData {
                    what: format!("references for {own} other than itself"),
                    needed: 1,
                    got: 0,
                });
            }
            let k = k.min(eligible.len());
            Ok(match &index {
                Some(index) => index
                    .nearest_where(&targets.fingerprints()[t], k, |r| {
                        &references.cell_ids()[r] != own
                    })
                    .into_iter()
                    .map(|(r, _)| r)
                    .collect(),
                None => sample(rng, eligible.len(), k)
                    .into_iter()
                    .map(|i| eligible[i])
                    .collect(),
            })
        })
        .collect()
}
