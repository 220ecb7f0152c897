//! Fleets from a folder's `index.json`: which cells belong together, and which of each
//! fleet's cells train and which test.
//!
//! A fleet is the cells one operator holds. An index says so with a `fleet` key per cell
//! ([`FleetGrouping::Fleet`]); a lab dataset such as MATR has none, and its fleets are formed
//! from the charging protocols ([`FleetGrouping::Protocol`]) or the batches
//! ([`FleetGrouping::Batch`], the `batch_date` key).
//!
//! Training and test cells come from each entry's `split`: `train` trains; `test` and
//! `primary_test` test; any other named split (MATR's `secondary_test`, say) is left out; an
//! entry without one trains when its fleet names splits (so marking the test cells is
//! enough). A fleet whose entries name no split at all holds out every third of its cells, in
//! index order, for testing (as the main job's synthetic fleets do). A fleet left with no cell
//! (all in other splits) is dropped; one left without a training or a test cell is an error.
//!
//! The key a grouping reads (`fleet` or `batch_date`, a string or a number) must be on every
//! entry; a missing `protocol` groups as the empty protocol (C-rate 0).
//!
//! ```
//! use battery_fl_core::data::{index_fleets, FleetGrouping, IndexEntry};
//!
//! let entry = |id: &str, fleet: &str| -> IndexEntry {
//!     serde_json::from_value(serde_json::json!({"cell_id": id, "file": id, "fleet": fleet}))
//!         .unwrap()
//! };
//! let index: Vec<IndexEntry> = (0..6)
//!     .map(|i| entry(&format!("c{i}"), if i < 3 { "north" } else { "south" }))
//!     .collect();
//! let fleets = index_fleets(&index, FleetGrouping::Fleet, None)?;
//! assert_eq!(fleets.len(), 2);
//! assert_eq!(fleets[0].id, "north");
//! // no split named: every third cell of a fleet tests
//! assert_eq!((fleets[0].train.len(), fleets[0].test.len()), (2, 1));
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{load_cell, load_index, Cell, IndexEntry};
use crate::error::{Error, Result};

/// Protocol groups of [`FleetGrouping::Protocol`] unless asked otherwise (MATR's four
/// fleets).
pub const DEFAULT_PROTOCOL_GROUPS: usize = 4;

/// How the cells of an index are grouped into fleets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetGrouping {
    /// Charging protocols sorted by their first-step C-rate, cut into the asked number of
    /// groups of consecutive protocols (`protocols-<k>`; a group left empty is dropped).
    Protocol,
    /// The entries' `fleet` key: one fleet per value, in order of first appearance.
    Fleet,
    /// The entries' `batch_date` key: one fleet per batch, in order of first appearance.
    Batch,
}

/// One fleet of an index: its training and test cells, as index entries ([`IndexFleet`]) or
/// loaded ([`LoadedFleet`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSplit<T> {
    /// Its name (the `fleet` or `batch_date` value, or `protocols-<k>`).
    pub id: String,
    /// Its training cells.
    pub train: Vec<T>,
    /// Its test cells.
    pub test: Vec<T>,
}

/// A fleet of an index, its cells as entries.
pub type IndexFleet = FleetSplit<IndexEntry>;

/// A fleet of a folder, its cells loaded (as stored: clean them before training).
pub type LoadedFleet = FleetSplit<Cell>;

/// The fleets of `index` grouped by `grouping`, each split into training and test cells
/// (module docs). `fleets` is how many protocol groups [`FleetGrouping::Protocol`] cuts
/// (`None`: [`DEFAULT_PROTOCOL_GROUPS`]); the other groupings take their fleets from the
/// index and refuse a count.
///
/// # Errors
/// [`Error::InvalidData`] when an entry lacks the `fleet` / `batch_date` key the grouping
/// reads (or it is neither a string nor a number), [`Error::InvalidConfig`] for protocol
/// groups with `fleets` 0 or a count given to another grouping, and [`Error::NotEnoughData`]
/// for fewer than two fleets or a fleet without a training or a test cell.
pub fn index_fleets(
    index: &[IndexEntry],
    grouping: FleetGrouping,
    fleets: Option<usize>,
) -> Result<Vec<IndexFleet>> {
    if let (Some(n), FleetGrouping::Fleet | FleetGrouping::Batch) = (fleets, grouping) {
        return Err(Error::config(
            "fleets",
            format!(
                "{n} fleets asked of the {} grouping, which takes its fleets from the index \
                 (only the protocol grouping cuts a number of groups)",
                grouping.name()
            ),
        ));
    }
    let keys: Vec<String> = index
        .iter()
        .map(|e| key(e, grouping))
        .collect::<Result<_>>()?;
    let groups: Vec<(String, Vec<&IndexEntry>)> = match grouping {
        FleetGrouping::Protocol => {
            by_protocol(index, &keys, fleets.unwrap_or(DEFAULT_PROTOCOL_GROUPS))?
        }
        FleetGrouping::Fleet | FleetGrouping::Batch => {
            let mut groups: Vec<(String, Vec<&IndexEntry>)> = Vec::new();
            for (e, k) in index.iter().zip(&keys) {
                match groups.iter_mut().find(|g| &g.0 == k) {
                    Some(g) => g.1.push(e),
                    None => groups.push((k.clone(), vec![e])),
                }
            }
            groups
        }
    };
    let groups: Vec<IndexFleet> = groups
        .into_iter()
        .map(|(id, entries)| split(id, &entries))
        .filter(|f| !(f.train.is_empty() && f.test.is_empty()))
        .collect();
    if groups.len() < 2 {
        return Err(Error::NotEnoughData {
            what: format!("fleets in the index (grouped by {})", grouping.name()),
            needed: 2,
            got: groups.len(),
        });
    }
    for f in &groups {
        f.check_cells()?;
    }
    Ok(groups)
}

impl<T> FleetSplit<T> {
    /// This fleet without the cells `leave_out` picks (MATR's known outlier, say), dropped
    /// after grouping so that the fleet keeps its place among the protocol groups.
    ///
    /// # Errors
    /// [`Error::NotEnoughData`] when no training or no test cell is left.
    pub fn without(self, mut leave_out: impl FnMut(&T) -> bool) -> Result<Self> {
        let mut keep =
            |cells: Vec<T>| -> Vec<T> { cells.into_iter().filter(|c| !leave_out(c)).collect() };
        let fleet = FleetSplit {
            train: keep(self.train),
            test: keep(self.test),
            id: self.id,
        };
        fleet.check_cells()?;
        Ok(fleet)
    }

    /// A fleet needs a training and a test cell.
    fn check_cells(&self) -> Result<()> {
        for (what, cells) in [("training", self.train.len()), ("test", self.test.len())] {
            if cells == 0 {
                return Err(Error::NotEnoughData {
                    what: format!("{what} cells of fleet {}", self.id),
                    needed: 1,
                    got: 0,
                });
            }
        }
        Ok(())
    }
}

impl FleetGrouping {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            FleetGrouping::Protocol => "protocol",
            FleetGrouping::Fleet => "fleet",
            FleetGrouping::Batch => "batch",
        }
    }
}

/// The fleets of a folder with an `index.json` ([`index_fleets`]), each fleet's cells loaded
/// in parallel.
///
/// # Errors
/// The errors of [`load_index`], [`index_fleets`] and [`load_cell`].
pub fn load_fleets(
    folder: impl AsRef<Path>,
    grouping: FleetGrouping,
    fleets: Option<usize>,
) -> Result<Vec<LoadedFleet>> {
    let folder = folder.as_ref();
    let load = |entries: &[IndexEntry]| -> Result<Vec<Cell>> {
        entries
            .par_iter()
            .map(|e| load_cell(folder.join(&e.file)))
            .collect()
    };
    index_fleets(&load_index(folder)?, grouping, fleets)?
        .into_iter()
        .map(|f| {
            Ok(LoadedFleet {
                train: load(&f.train)?,
                test: load(&f.test)?,
                id: f.id,
            })
        })
        .collect()
}

/// The value an entry is grouped by.
fn key(e: &IndexEntry, grouping: FleetGrouping) -> Result<String> {
    let (name, value) = match grouping {
        FleetGrouping::Protocol => return Ok(e.protocol.clone().unwrap_or_default()),
        FleetGrouping::Fleet => ("fleet", e.extra.get("fleet")),
        FleetGrouping::Batch => ("batch_date", e.extra.get("batch_date")),
    };
    match value {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
        _ => Err(Error::InvalidData {
            cell_id: e.cell_id.clone(),
            cycle: None,
            field: name.into(),
            reason: "the index entry needs it (a string or a number) to group fleets by".into(),
        }),
    }
}

/// Protocols sorted by first-step C-rate (the number before the first `C`), cut into `n`
/// groups of consecutive protocols.
fn by_protocol<'a>(
    index: &'a [IndexEntry],
    keys: &[String],
    n: usize,
) -> Result<Vec<(String, Vec<&'a IndexEntry>)>> {
    if n == 0 {
        return Err(Error::config("fleets", "need at least one protocol group"));
    }
    let c_rate = |p: &str| {
        p.split('C')
            .next()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mut protocols = keys.to_vec();
    protocols.sort_by(|a, b| c_rate(a).total_cmp(&c_rate(b)).then(a.cmp(b)));
    protocols.dedup();
    let mut groups: Vec<(String, Vec<&IndexEntry>)> = (0..n)
        .map(|k| (format!("protocols-{k}"), Vec::new()))
        .collect();
    for (e, k) in index.iter().zip(keys) {
        let at = protocols.iter().position(|p| p == k).unwrap_or(0);
        groups[at * n / protocols.len().max(1)].1.push(e);
    }
    Ok(groups)
}

/// A fleet's entries split by their `split` (module docs).
fn split(id: String, entries: &[&IndexEntry]) -> IndexFleet {
    let named = entries.iter().any(|e| e.split.is_some());
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, e) in entries.iter().enumerate() {
        let to_test = match e.split.as_deref() {
            None if named => false,
            None => i % 3 == 2,
            Some("train") => false,
            Some("test" | "primary_test") => true,
            Some(_) => continue,
        };
        if to_test {
            test.push((*e).clone());
        } else {
            train.push((*e).clone());
        }
    }
    IndexFleet { id, train, test }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(id: &str, extra: serde_json::Value) -> IndexEntry {
        let mut v = serde_json::json!({"cell_id": id, "file": format!("{id}.json.gz")});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn fleets_follow_the_fleet_key_and_the_named_splits() {
        let index = vec![
            entry("a0", serde_json::json!({"fleet": "A", "split": "train"})),
            entry("b0", serde_json::json!({"fleet": "B", "split": "train"})),
            entry("a1", serde_json::json!({"fleet": "A", "split": "test"})),
            entry(
                "a2",
                serde_json::json!({"fleet": "A", "split": "secondary_test"}),
            ),
            entry(
                "b1",
                serde_json::json!({"fleet": "B", "split": "primary_test"}),
            ),
            entry("a3", serde_json::json!({"fleet": "A"})),
            entry(
                "c0",
                serde_json::json!({"fleet": 7, "split": "secondary_test"}),
            ),
        ];
        let fleets = index_fleets(&index, FleetGrouping::Fleet, None).unwrap();
        let ids = |v: &[IndexEntry]| v.iter().map(|e| e.cell_id.clone()).collect::<Vec<_>>();
        assert_eq!(fleets[0].id, "A");
        // an unnamed entry among named ones trains; another named split is left out, and a
        // fleet with nothing left (C, all secondary_test) is no fleet
        assert_eq!(ids(&fleets[0].train), ["a0", "a3"]);
        assert_eq!(ids(&fleets[0].test), ["a1"]);
        assert_eq!(fleets.len(), 2);
        assert_eq!(
            (ids(&fleets[1].train), ids(&fleets[1].test)),
            (vec!["b0".to_string()], vec!["b1".to_string()])
        );
    }

    #[test]
    fn leaving_cells_out_keeps_the_fleet_or_names_what_it_lost() {
        let fleet = |test: &[&str]| IndexFleet {
            id: "protocols-0".into(),
            train: vec![
                entry("t0", serde_json::json!({})),
                entry("t1", serde_json::json!({})),
            ],
            test: test
                .iter()
                .map(|id| entry(id, serde_json::json!({})))
                .collect(),
        };
        let is = |id: &'static str| move |e: &IndexEntry| e.cell_id == id;
        let kept = fleet(&["x", "outlier"]).without(is("outlier")).unwrap();
        assert_eq!((kept.train.len(), kept.test.len()), (2, 1));
        assert_eq!(kept.test[0].cell_id, "x");
        let kept = fleet(&["x"]).without(is("t1")).unwrap();
        assert_eq!((kept.train.len(), kept.test.len()), (1, 1));
        // the outlier as a fleet's only test cell: an error naming the fleet, not a fleet
        // scored on no cells
        match fleet(&["outlier"]).without(is("outlier")) {
            Err(Error::NotEnoughData {
                what,
                needed: 1,
                got: 0,
            }) => {
                assert_eq!(what, "test cells of fleet protocols-0");
            }
            other => panic!("expected NotEnoughData, got {other:?}"),
        }
    }

    #[test]
    fn protocols_are_cut_by_c_rate_and_bad_indexes_are_typed_errors() {
        let p = |id: &str, protocol: &str, split: &str| {
            entry(
                id,
                serde_json::json!({"protocol": protocol, "split": split}),
            )
        };
        let index = vec![
            p("x", "5C(80%)-4C", "train"),
            p("y", "1C(4%)-6C", "train"),
            p("z", "3.6C(80%)-3.6C", "test"),
            p("w", "4C(80%)-4C", "test"),
        ];
        let fleets = index_fleets(&index, FleetGrouping::Protocol, Some(2)).unwrap();
        // (training cells, then test cells)
        let ids = |f: &IndexFleet| {
            f.train
                .iter()
                .chain(&f.test)
                .map(|e| e.cell_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&fleets[0]), ["y", "z"]);
        assert_eq!(ids(&fleets[1]), ["x", "w"]);
        // grouping by a key some entry lacks
        let err = index_fleets(&index, FleetGrouping::Fleet, None).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidData { cell_id, field, .. } if cell_id == "x" && field == "fleet"),
            "{err}"
        );
        // one fleet is no federation; a fleet with only test cells cannot train
        let one = vec![entry("a", serde_json::json!({"batch_date": "d1"}))];
        assert!(matches!(
            index_fleets(&one, FleetGrouping::Batch, None),
            Err(Error::NotEnoughData { .. })
        ));
        let untrained = vec![
            entry("a", serde_json::json!({"fleet": "A", "split": "train"})),
            entry("a1", serde_json::json!({"fleet": "A", "split": "test"})),
            entry("b", serde_json::json!({"fleet": "B", "split": "test"})),
        ];
        let err = index_fleets(&untrained, FleetGrouping::Fleet, None).unwrap_err();
        assert!(
            matches!(&err, Error::NotEnoughData { what, .. } if what == "training cells of fleet B"),
            "{err}"
        );
        // and one without a test cell cannot be scored (two unnamed cells: none is a third)
        let untested = vec![
            entry("a0", serde_json::json!({"fleet": "A"})),
            entry("a1", serde_json::json!({"fleet": "A"})),
            entry("a2", serde_json::json!({"fleet": "A"})),
            entry("b0", serde_json::json!({"fleet": "B"})),
            entry("b1", serde_json::json!({"fleet": "B"})),
        ];
        let err = index_fleets(&untested, FleetGrouping::Fleet, None).unwrap_err();
        assert!(
            matches!(&err, Error::NotEnoughData { what, .. } if what == "test cells of fleet B"),
            "{err}"
        );
        assert!(matches!(
            index_fleets(&index, FleetGrouping::Protocol, Some(0)),
            Err(Error::InvalidConfig { .. })
        ));
        // a count means protocol groups: another grouping refuses it rather than ignore it
        let keyed = vec![
            entry("a", serde_json::json!({"fleet": "A", "split": "train"})),
            entry("a1", serde_json::json!({"fleet": "A", "split": "test"})),
            entry("b", serde_json::json!({"fleet": "B", "split": "train"})),
            entry("b1", serde_json::json!({"fleet": "B", "split": "test"})),
        ];
        assert_eq!(
            index_fleets(&keyed, FleetGrouping::Fleet, None)
                .unwrap()
                .len(),
            2
        );
        let err = index_fleets(&keyed, FleetGrouping::Fleet, Some(2)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig { field, .. } if field == "fleets"),
            "{err}"
        );
    }
}
