//! A non-spiking node's decoding over time as a candle operation, with flexsn's own forward and
//! backward ([`Decode::forward`], [`Decode::backward`]): ties of `max`/`min` send the gradient
//! to the first extreme step, as SpikingJelly (torch) does.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use flexsn_neurons::Decode;

use crate::error::{Error, check_f32};

struct DecodeOp {
    decode: Decode,
    t: usize,
    n: usize,
}

impl DecodeOp {
    fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32], Error> {
        match (s, l.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
            _ => Err(Error::Neuron(
                "decode: expected a contiguous float32 sequence".into(),
            )),
        }
    }
}

impl CustomOp1 for DecodeOp {
    fn name(&self) -> &'static str {
        "flexsn-decode"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = self
            .decode
            .forward(Self::slice(s, l)?, self.t, self.n)
            .map_err(candle_core::Error::wrap)?;
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }

    fn bwd(
        &self,
        seq: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let seq_v = seq.flatten_all()?.to_vec1::<f32>()?;
        let grad_v = grad.flatten_all()?.to_vec1::<f32>()?;
        let g = self
            .decode
            .backward(&seq_v, &grad_v, self.t, self.n)
            .map_err(candle_core::Error::wrap)?;
        Ok(Some(Tensor::from_vec(g, seq.shape(), seq.device())?))
    }
}

/// Applies `decode` to a voltage sequence `[T, *shape]`: the sequence itself, or `[*shape]`.
pub fn decode(decode: Decode, seq: &Tensor) -> candle_core::Result<Tensor> {
    check_f32("voltage sequence", seq)?;
    if decode == Decode::Sequence {
        return Ok(seq.clone());
    }
    let dims = seq.dims();
    let Some((&t, shape)) = dims.split_first() else {
        return Err(Error::Shape {
            what: "voltage sequence".into(),
            expected: "[T, ...]".into(),
            got: dims.to_vec(),
        }
        .into());
    };
    let op = DecodeOp {
        decode,
        t,
        n: shape.iter().product(),
    };
    seq.contiguous()?.apply_op1(op)?.reshape(shape)
}
