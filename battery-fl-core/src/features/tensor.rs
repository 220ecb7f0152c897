//! [`Features`]: an owned float32 tensor of shape `(channels, cycles, interp_dim)`.

use crate::error::{Error, Result};

/// Number of BatLiNet channels.
pub const CHANNELS: usize = 6;

/// Short names of the six channels, in order.
pub const CHANNEL_NAMES: [&str; CHANNELS] = ["V(Qc)", "V(Qd)", "I(Qc)", "I(Qd)", "dV(Q)", "R(Q)"];

/// Features of one cell: a dense, row-major (C order) float32 tensor.
///
/// # Shapes
///
/// `shape() == [channels, cycles, interp_dim]`; the featurizer always produces
/// `channels == 6`. Element `(c, r, k)` (channel `c`, cycle row `r`, grid point `k`) is at
/// flat index `(c * cycles + r) * interp_dim + k` of [`Features::as_slice`], so
/// [`Features::row`]`(c, r)` is a contiguous slice of length `interp_dim`. This is the memory
/// layout of a numpy/torch array of the same shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    data: Vec<f32>,
    shape: [usize; 3],
}

impl Features {
    /// All zeros.
    pub fn zeros(shape: [usize; 3]) -> Self {
        Features {
            data: vec![0.0; shape.iter().product()],
            shape,
        }
    }

    /// Wrap a flat buffer in C order.
    ///
    /// # Errors
    /// [`Error::Shape`] when `data.len()` is not the product of `shape`.
    pub fn from_vec(data: Vec<f32>, shape: [usize; 3]) -> Result<Self> {
        let want: usize = shape.iter().product();
        if data.len() != want {
            return Err(Error::Shape {
                what: "features buffer".into(),
                expected: vec![want],
                got: vec![data.len()],
            });
        }
        Ok(Features { data, shape })
    }

    /// `[channels, cycles, interp_dim]`.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.shape[0]
    }

    /// Number of cycle rows.
    pub fn cycles(&self) -> usize {
        self.shape[1]
    }

    /// Number of grid points per row.
    pub fn interp_dim(&self) -> usize {
        self.shape[2]
    }

    /// Total number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The flat buffer in C order.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The flat buffer in C order, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The flat buffer, consuming the tensor.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    fn row_range(&self, channel: usize, cycle: usize) -> Option<std::ops::Range<usize>> {
        let [c, h, w] = self.shape;
        (channel < c && cycle < h).then(|| {
            let start = (channel * h + cycle) * w;
            start..start + w
        })
    }

    /// The curve of one channel at one cycle row, or `None` when out of range.
    pub fn get_row(&self, channel: usize, cycle: usize) -> Option<&[f32]> {
        self.row_range(channel, cycle).map(|r| &self.data[r])
    }

    /// Mutable [`Features::get_row`].
    pub fn get_row_mut(&mut self, channel: usize, cycle: usize) -> Option<&mut [f32]> {
        self.row_range(channel, cycle)
            .map(move |r| &mut self.data[r])
    }

    /// The curve of one channel at one cycle row (`interp_dim` values).
    ///
    /// # Panics
    /// When `channel` or `cycle` is out of range, like slice indexing; use
    /// [`Features::get_row`] for a checked version.
    pub fn row(&self, channel: usize, cycle: usize) -> &[f32] {
        let [c, h, w] = self.shape;
        assert!(
            channel < c && cycle < h,
            "row ({channel}, {cycle}) out of range for {:?}",
            self.shape
        );
        &self.data[(channel * h + cycle) * w..][..w]
    }

    /// Mutable [`Features::row`].
    ///
    /// # Panics
    /// When `channel` or `cycle` is out of range.
    pub fn row_mut(&mut self, channel: usize, cycle: usize) -> &mut [f32] {
        let [c, h, w] = self.shape;
        assert!(
            channel < c && cycle < h,
            "row ({channel}, {cycle}) out of range for {:?}",
            self.shape
        );
        &mut self.data[(channel * h + cycle) * w..][..w]
    }

    /// The `cycles x interp_dim` block of one channel, or `None` when out of range.
    pub fn channel(&self, channel: usize) -> Option<&[f32]> {
        let [c, h, w] = self.shape;
        (channel < c).then(|| &self.data[channel * h * w..][..h * w])
    }

    /// Iterate over all rows (channel-major), each `interp_dim` long.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, f32> {
        self.data.chunks_exact(self.shape[2].max(1))
    }

    /// Iterate mutably over all rows (channel-major).
    pub fn rows_mut(&mut self) -> std::slice::ChunksExactMut<'_, f32> {
        self.data.chunks_exact_mut(self.shape[2].max(1))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_c_order() {
        let data: Vec<f32> = (0..2 * 3 * 4).map(|v| v as f32).collect();
        let f = Features::from_vec(data, [2, 3, 4]).unwrap();
        assert_eq!(f.row(1, 2), &[20.0, 21.0, 22.0, 23.0]);
        assert_eq!(f.get_row(0, 1), Some(&[4.0, 5.0, 6.0, 7.0][..]));
        assert_eq!(f.get_row(2, 0), None);
        assert_eq!(f.get_row(0, 3), None);
        assert_eq!(f.channel(1).map(<[f32]>::len), Some(12));
        assert_eq!(f.rows().count(), 6);
        assert_eq!(
            (f.channels(), f.cycles(), f.interp_dim(), f.len()),
            (2, 3, 4, 24)
        );
        assert_eq!(f.into_vec().len(), 24);
    }

    #[test]
    fn from_vec_checks_length() {
        assert!(matches!(
            Features::from_vec(vec![0.0; 5], [1, 2, 3]),
            Err(Error::Shape { .. })
        ));
    }
}
