//! One call of a compiled scan function on raw buffers: the addresses its frame holds, each
//! checked against the buffer it points into.
//!
//! The generated code reads neuron `j` of step `t` of a `[T, ·]` buffer at
//! `addr + 4 * (t * pitch + j)`, for the call's steps `0..T` and neurons `b..e`, and the
//! per-neuron buffers (initial and final states, per-neuron params, sums) at `addr + 4 * j`.
//! A buffer can so be a whole `[T, N]` tensor (`pitch = N`), a block of its rows and columns
//! read or written in place, or a small `[T, e - b]` buffer of the range alone (`pitch = e - b`,
//! `addr` moved back by `b` floats so that neuron `b` lands on its first element).

use crate::RuntimeError;

/// The steps and neurons one call covers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    /// Steps `0..t`.
    pub t: usize,
    /// Neurons `b..e` (absolute indices, as the per-neuron buffers are indexed).
    pub neurons: (usize, usize),
}

impl Span {
    fn width(&self) -> usize {
        self.neurons.1 - self.neurons.0
    }
}

/// A `[T, ·]` buffer as a call addresses it: where neuron 0 of step 0 would be, and the distance
/// between rows in floats.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rows {
    pub addr: usize,
    pub pitch: usize,
}

/// A buffer of `len` floats at `base`, to be addressed by a call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Buffer {
    pub base: usize,
    pub len: usize,
}

impl Buffer {
    pub fn of(s: &[f32]) -> Buffer {
        Buffer {
            base: s.as_ptr() as usize,
            len: s.len(),
        }
    }

    pub fn of_mut(s: &mut [f32]) -> Buffer {
        Buffer {
            base: s.as_mut_ptr() as usize,
            len: s.len(),
        }
    }

    /// Rows `0..span.t`, `pitch` apart, with the span's first neuron of row 0 at element `at`.
    /// Fails unless every element the call touches lies in the buffer and rows do not overlap.
    pub fn rows(self, at: usize, pitch: usize, span: Span) -> Result<Rows, RuntimeError> {
        let w = span.width();
        let last = span.t.saturating_sub(1);
        let end = last
            .checked_mul(pitch)
            .and_then(|r| r.checked_add(at))
            .and_then(|r| r.checked_add(w));
        let fits = span.t == 0 || w == 0 || end.is_some_and(|e| e <= self.len);
        if !fits || (span.t > 1 && pitch < w) {
            return Err(RuntimeError::Jit(format!(
                "internal: rows of {w} neurons, {} steps at {at} with pitch {pitch} do not fit a \
                 buffer of {} floats",
                span.t, self.len
            )));
        }
        Ok(Rows {
            addr: self.shifted(at, span),
            pitch,
        })
    }

    /// One value per neuron of the span, the first at element `at`.
    pub fn neurons(self, at: usize, span: Span) -> Result<usize, RuntimeError> {
        let one = Span { t: 1, ..span };
        self.rows(at, 0, one).map(|r| r.addr)
    }

    /// The address of element `at`, where a call reads `count` values from (one per step of a
    /// per-step param, the one value of a shared one). Fails unless they lie in the buffer.
    pub fn values(self, at: usize, count: usize) -> Result<usize, RuntimeError> {
        let first = Span {
            t: 1,
            neurons: (0, count),
        };
        self.rows(at, 0, first).map(|r| r.addr)
    }

    /// The address of element `at`, moved back by the span's first neuron (wrapping: the code
    /// adds the neuron index back before any access).
    fn shifted(self, at: usize, span: Span) -> usize {
        self.base
            .wrapping_add(at.wrapping_mul(4))
            .wrapping_sub(span.neurons.0.wrapping_mul(4))
    }
}

/// Everything one call of a scan function reads and writes, by address.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawCall {
    /// Per input: its rows.
    pub inputs: Vec<Rows>,
    /// Per state: its initial values, per neuron.
    pub init_states: Vec<usize>,
    /// Per param: its values (per step from step 0, per neuron, or the one shared value).
    pub params: Vec<usize>,
    /// Per output: its rows (a sequence), or its per-neuron sums (pitch unused).
    pub outputs: Vec<Rows>,
    /// Per state, when the kernel stores state sequences: their rows.
    pub state_seqs: Vec<Rows>,
    /// Per state: its final values, per neuron.
    pub final_states: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAN: Span = Span {
        t: 3,
        neurons: (16, 20),
    };

    #[test]
    fn rows_address_the_span_in_place() {
        let buf = vec![0.0f32; 100];
        let b = Buffer::of(&buf);
        // Neuron 16 of row 0 at element 10: neuron j of step t at 10 + 30 t + (j - 16).
        let r = b.rows(10, 30, SPAN).unwrap();
        assert_eq!(r.pitch, 30);
        assert_eq!(
            r.addr.wrapping_add(4 * (2 * 30 + 19)),
            b.base + 4 * (10 + 60 + 3)
        );
        // The last element the call touches is the buffer's last.
        assert!(b.rows(36, 30, SPAN).is_ok());
    }

    #[test]
    fn rows_outside_the_buffer_or_overlapping_are_refused() {
        let buf = vec![0.0f32; 100];
        let b = Buffer::of(&buf);
        assert!(b.rows(37, 30, SPAN).is_err());
        assert!(
            b.rows(0, 3, SPAN).is_err(),
            "rows of 4 neurons 3 apart overlap"
        );
        assert!(b.rows(0, usize::MAX, SPAN).is_err(), "overflow");
        assert!(b.neurons(96, SPAN).is_ok());
        assert!(b.neurons(97, SPAN).is_err());
        assert_eq!(b.values(7, 93).unwrap(), b.base + 4 * 7);
        assert!(b.values(7, 94).is_err());
        // Nothing touched: nothing to check.
        assert!(b.rows(1000, 30, Span { t: 0, ..SPAN }).is_ok());
    }
}
