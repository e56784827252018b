//! Plain loops: `f32` sums in index order (`f64` for the parameter gradients). Obviously right;
//! the oracle the fast path is tested against.

use flexsn_compiler::ir::Surrogate;

use super::Mixing;

fn h_at(m: &Mixing, x: &[f32], n: usize, r: usize, c: usize) -> f32 {
    let mut acc = 0.0f32;
    for j in 0..m.cols {
        acc += m.weight[r * m.cols + j] * x[j * n + c];
    }
    acc + m.bias[r]
}

pub(super) fn forward(m: &Mixing, x: &[f32], n: usize, s: &mut [f32]) {
    for r in 0..m.rows {
        for c in 0..n {
            s[r * n + c] = Surrogate::heaviside(h_at(m, x, n, r, c));
        }
    }
}

pub(super) fn backward(
    m: &Mixing,
    x: &[f32],
    n: usize,
    gs: &[f32],
    gx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let (rows, cols) = (m.rows, m.cols);
    let mut gh = vec![0.0f32; rows * n];
    for r in 0..rows {
        for c in 0..n {
            let h = h_at(m, x, n, r, c);
            gh[r * n + c] = m.surrogate.grad(h) * gs[r * n + c];
        }
    }
    for j in 0..cols {
        for c in 0..n {
            let mut acc = 0.0f32;
            for r in 0..rows {
                acc += m.weight[r * cols + j] * gh[r * n + c];
            }
            gx[j * n + c] = acc;
        }
    }
    let mut gw = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for j in 0..cols {
            let acc: f64 = (0..n)
                .map(|c| gh[r * n + c] as f64 * x[j * n + c] as f64)
                .sum();
            gw[r * cols + j] = acc as f32;
        }
    }
    let gb = (0..rows)
        .map(|r| {
            gh[r * n..(r + 1) * n]
                .iter()
                .map(|&g| g as f64)
                .sum::<f64>() as f32
        })
        .collect();
    (gw, gb)
}
