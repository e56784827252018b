//! Blocked GEMM (`matrixmultiply`) fused with the spike step, over column chunks on threads.

use flexsn_compiler::ir::Surrogate;

use super::Mixing;
use crate::memory::Estimate;

/// A matrix operand: slice, row stride, column stride (both non-negative).
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// `C ← A·B + beta·C` with `A` `[m, k]`, `B` `[k, n]`, `C` `[m, n]` (row stride `rsc`, column
/// stride 1). Checks that every element the GEMM touches lies inside its slice.
#[allow(clippy::too_many_arguments)]
fn gemm(m: usize, k: usize, n: usize, a: Mat, b: Mat, beta: f32, c: &mut [f32], rsc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs
    };
    assert!(
        k == 0 || last(m, k, a.rs, a.cs) < a.data.len(),
        "gemm: A out of bounds"
    );
    assert!(
        k == 0 || last(k, n, b.rs, b.cs) < b.data.len(),
        "gemm: B out of bounds"
    );
    assert!(last(m, n, rsc, 1) < c.len(), "gemm: C out of bounds");
    // SAFETY: the asserts above check that every element read from `a` and `b` and written to
    // `c` lies inside the slice it comes from; strides are non-negative and `c` is a unique
    // borrow with row stride >= n (so no two elements of C alias).
    assert!(m == 1 || rsc >= n, "gemm: C rows overlap");
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            1,
        );
    }
}

/// Columns per block: the `[rows, nb]` block of `H` (and of `X`) stays in L2.
fn block_cols(rows: usize, cols: usize) -> usize {
    const BLOCK_FLOATS: usize = 16 * 1024; // 64 KiB per buffer
    let per_col = rows.max(cols).max(1);
    (BLOCK_FLOATS / per_col).clamp(16, 4096) / 16 * 16
}

/// Column chunks (the unit of work of a thread and of the deterministic gradient reduction):
/// a function of the shape only, at most `MAX_CHUNKS` of them, whole blocks each.
fn chunk_cols(rows: usize, cols: usize, n: usize) -> usize {
    const MAX_CHUNKS: usize = 64;
    let nb = block_cols(rows, cols);
    let per = n.div_ceil(MAX_CHUNKS).max(1);
    per.div_ceil(nb) * nb
}

/// Below this many multiply-adds a call stays on one thread (thread start-up costs more).
const PARALLEL_MIN_WORK: usize = 1 << 18;

fn thread_count(requested: usize, chunks: usize, work: usize) -> usize {
    if work < PARALLEL_MIN_WORK {
        return 1;
    }
    let avail = if requested == 0 {
        std::thread::available_parallelism().map_or(1, |p| p.get())
    } else {
        requested
    };
    avail.clamp(1, chunks.max(1))
}

/// Splits each of the `rows` rows of `out` (`[rows, n]`) at multiples of `ch` columns and
/// returns, per chunk, its row segments: disjoint mutable views a thread can own.
fn row_segments(out: &mut [f32], n: usize, ch: usize) -> Vec<Vec<&mut [f32]>> {
    let chunks = n.div_ceil(ch);
    let mut per_chunk: Vec<Vec<&mut [f32]>> = (0..chunks).map(|_| Vec::new()).collect();
    for row in out.chunks_mut(n) {
        for (i, seg) in row.chunks_mut(ch).enumerate() {
            per_chunk[i].push(seg);
        }
    }
    per_chunk
}

/// Runs `work(chunk_index, item)` for every item, on `threads` threads, items split into
/// contiguous runs.
fn run_chunks<T: Send>(items: Vec<T>, threads: usize, work: impl Fn(usize, T) + Sync) {
    if threads <= 1 {
        for (i, it) in items.into_iter().enumerate() {
            work(i, it);
        }
        return;
    }
    let total = items.len();
    let mut groups: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, it) in items.into_iter().enumerate() {
        groups[i * threads / total].push((i, it));
    }
    std::thread::scope(|s| {
        for g in groups {
            let work = &work;
            s.spawn(move || {
                for (i, it) in g {
                    work(i, it);
                }
            });
        }
    });
}

/// `e` plus the working memory of a call: per thread a `[rows, nb]` block (backward also a
/// `[cols, nb]` one), and backward's per-chunk partial gradients and their f64 sum.
pub(super) fn scratch(
    m: &Mixing,
    n: usize,
    threads: usize,
    backward: bool,
    e: Estimate,
) -> Estimate {
    let (rows, cols) = (m.rows, m.cols);
    let nb = block_cols(rows, cols);
    let chunks = n.div_ceil(chunk_cols(rows, cols, n));
    let work = rows.saturating_mul(cols).saturating_mul(n);
    let f = std::mem::size_of::<f32>();
    if !backward {
        return e.add(thread_count(threads, chunks, work), &[rows, nb], f);
    }
    let threads = thread_count(threads, chunks, work.saturating_mul(3));
    let d = std::mem::size_of::<f64>();
    e.add(threads, &[rows + cols, nb], f)
        .add(chunks, &[rows, cols + 1], f)
        .add(1, &[rows, cols + 1], d)
}

/// `H = W·X` over the `w` columns of `x` (`[cols, N]`) from column `col`, into `h`
/// (`[rows, w]`): the block GEMM of forward, recomputed by backward.
fn mix_block(m: &Mixing, x: &[f32], n: usize, col: usize, w: usize, h: &mut [f32]) {
    gemm(
        m.rows,
        m.cols,
        w,
        Mat {
            data: m.weight,
            rs: m.cols,
            cs: 1,
        },
        Mat {
            data: &x[col..],
            rs: n,
            cs: 1,
        },
        0.0,
        h,
        w,
    );
}

pub(super) fn forward(m: &Mixing, x: &[f32], n: usize, threads: usize, s: &mut [f32]) {
    let (rows, cols) = (m.rows, m.cols);
    let nb = block_cols(rows, cols);
    let ch = chunk_cols(rows, cols, n);
    let segs = row_segments(s, n, ch);
    let threads = thread_count(threads, segs.len(), rows * cols * n);
    run_chunks(segs, threads, |ci, mut out_rows| {
        let c0 = ci * ch;
        let width = out_rows.first().map_or(0, |r| r.len());
        if cols <= SMALL_COLS {
            small_forward(m, x, n, c0, &mut out_rows);
            return;
        }
        let mut h = vec![0.0f32; rows * nb];
        let mut off = 0;
        while off < width {
            let w = nb.min(width - off);
            mix_block(m, x, n, c0 + off, w, &mut h);
            for (r, out) in out_rows.iter_mut().enumerate() {
                let b = m.bias[r];
                let dst = &mut out[off..off + w];
                for (d, &hv) in dst.iter_mut().zip(&h[r * w..(r + 1) * w]) {
                    *d = if hv + b >= 0.0 { 1.0 } else { 0.0 };
                }
            }
            off += w;
        }
    });
}

/// Up to this many input (and, backward, output) steps, the mixing skips the GEMM crate, whose
/// packing and fixed-size micro-kernels cost more than the few multiply-adds per column, for
/// plain loops ([`small_forward`], [`small_backward`]). Measured here (T = 4, N = 4M, one
/// thread): forward 18 ms instead of ~34 ms, backward 68 ms instead of 125 ms; at T = 8 the
/// GEMM path was as fast or faster, so the threshold is 4.
pub(super) const SMALL_COLS: usize = 4;

/// Forward for `cols <= SMALL_COLS`: per output row, one pass over the chunk's columns with the
/// `cols` weights in registers (monomorphised per `cols`, vectorised over columns), the sum in
/// input-step order then the bias (the reference path's order, so bit-identical to it).
fn small_forward(m: &Mixing, x: &[f32], n: usize, c0: usize, out_rows: &mut [&mut [f32]]) {
    fn run<const C: usize>(
        m: &Mixing,
        x: &[f32],
        n: usize,
        c0: usize,
        out_rows: &mut [&mut [f32]],
    ) {
        for (r, out) in out_rows.iter_mut().enumerate() {
            let width = out.len();
            let w: [f32; C] = std::array::from_fn(|j| m.weight[r * C + j]);
            let xs: [&[f32]; C] = std::array::from_fn(|j| &x[j * n + c0..j * n + c0 + width]);
            let b = m.bias[r];
            for (i, o) in out.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for j in 0..C {
                    acc += w[j] * xs[j][i];
                }
                *o = if acc + b >= 0.0 { 1.0 } else { 0.0 };
            }
        }
    }
    match m.cols {
        1 => run::<1>(m, x, n, c0, out_rows),
        2 => run::<2>(m, x, n, c0, out_rows),
        3 => run::<3>(m, x, n, c0, out_rows),
        4 => run::<4>(m, x, n, c0, out_rows),
        c => unreachable!("small_forward called with {c} > {SMALL_COLS} columns"),
    }
}

/// Backward for `rows, cols <= SMALL_COLS` over one chunk (columns `c0..`, `gx_rows` its rows
/// of `gX`), in blocks of `g.len() / rows` columns: recompute `H` (as [`small_forward`]),
/// `gH = sg'(H + b)·gS`, then `gX = Wᵀ·gH` and the partial `gW += gH·Xᵀ`, `gb += Σ gH` with plain
/// loops (8-lane sums, a fixed order).
#[allow(clippy::too_many_arguments)]
fn small_backward(
    m: &Mixing,
    x: &[f32],
    n: usize,
    gs: &[f32],
    c0: usize,
    gx_rows: &mut [&mut [f32]],
    g: &mut [f32],
    part: &mut Partial,
) {
    fn run<const C: usize>(
        m: &Mixing,
        x: &[f32],
        n: usize,
        gs: &[f32],
        c0: usize,
        gx_rows: &mut [&mut [f32]],
        g: &mut [f32],
        part: &mut Partial,
    ) {
        let rows = m.rows;
        let width = gx_rows.first().map_or(0, |r| r.len());
        let nb = g.len() / rows;
        let mut off = 0;
        while off < width {
            let w = nb.min(width - off);
            let col = c0 + off;
            let xs: [&[f32]; C] = std::array::from_fn(|j| &x[j * n + col..j * n + col + w]);
            for r in 0..rows {
                let wr: [f32; C] = std::array::from_fn(|j| m.weight[r * C + j]);
                let grow = &mut g[r * w..(r + 1) * w];
                for (i, h) in grow.iter_mut().enumerate() {
                    let mut acc = 0.0f32;
                    for j in 0..C {
                        acc += wr[j] * xs[j][i];
                    }
                    *h = acc;
                }
                surrogate_times(
                    m.surrogate,
                    grow,
                    m.bias[r],
                    &gs[r * n + col..r * n + col + w],
                );
                part.gb[r] += sum_f64(grow);
                for (j, xj) in xs.iter().enumerate() {
                    part.gw[r * C + j] += dot(grow, xj);
                }
            }
            for (j, out) in gx_rows.iter_mut().enumerate() {
                let out = &mut out[off..off + w];
                out.fill(0.0);
                for r in 0..rows {
                    let wrj = m.weight[r * C + j];
                    for (o, &gv) in out.iter_mut().zip(&g[r * w..(r + 1) * w]) {
                        *o += wrj * gv;
                    }
                }
            }
            off += w;
        }
    }
    match m.cols {
        1 => run::<1>(m, x, n, gs, c0, gx_rows, g, part),
        2 => run::<2>(m, x, n, gs, c0, gx_rows, g, part),
        3 => run::<3>(m, x, n, gs, c0, gx_rows, g, part),
        4 => run::<4>(m, x, n, gs, c0, gx_rows, g, part),
        c => unreachable!("small_backward called with {c} > {SMALL_COLS} columns"),
    }
}

/// `Σ a[i]·b[i]` in `f32` over 8 independent lanes (vectorisable; fixed order).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((l, &p), &q) in lanes.iter_mut().zip(x).zip(y) {
            *l += p * q;
        }
    }
    let mut total = lanes.iter().sum::<f32>();
    for (&p, &q) in ta.iter().zip(tb) {
        total += p * q;
    }
    total
}

/// Expands `$fast` with `$f` bound to a plain-`f32` closure computing `sg'` (one closure type
/// per surrogate, so every use is monomorphised and inlined), or `$slow` with `$s` bound to the
/// surrogate when it has no fast form. Each fast formula is [`Surrogate::grad`]'s, operation for
/// operation, so the results are bit-identical (tested).
macro_rules! with_fast_grad {
    ($sg:expr, |$f:ident| $fast:expr, |$s:ident| $slow:expr) => {{
        use Surrogate::*;
        match $sg {
            ATan { alpha } => {
                let a = alpha / 2.0;
                let pa = std::f32::consts::PI * a;
                let $f = move |x: f32| {
                    let ax = pa * x;
                    a / (1.0 + ax * ax)
                };
                $fast
            }
            Sigmoid { alpha } => {
                let $f = move |x: f32| {
                    let s = 1.0 / (1.0 + (-(x * alpha)).exp());
                    (1.0 - s) * s * alpha
                };
                $fast
            }
            PiecewiseQuadratic { alpha } => {
                let (inv, a2) = (1.0 / alpha, alpha * alpha);
                let $f = move |x: f32| {
                    if x.abs() > inv {
                        0.0
                    } else {
                        -a2 * x.abs() + alpha
                    }
                };
                $fast
            }
            PiecewiseExp { alpha } => {
                let half = alpha / 2.0;
                let $f = move |x: f32| half * (-alpha * x.abs()).exp();
                $fast
            }
            SoftSign { alpha } => {
                let (inv, two_a) = (1.0 / alpha, 2.0 * alpha);
                let $f = move |x: f32| {
                    let d = inv + x.abs();
                    1.0 / (two_a * (d * d))
                };
                $fast
            }
            SuperSpike { alpha } => {
                let $f = move |x: f32| {
                    let d = x.abs() + 1.0;
                    alpha / (d * d)
                };
                $fast
            }
            NonzeroSignLogAbs { alpha } => {
                let inv = 1.0 / alpha;
                let $f = move |x: f32| 1.0 / (inv + x.abs());
                $fast
            }
            PiecewiseLeakyReLU { w, c } => {
                let inside = 1.0 / (2.0 * w);
                let $f = move |x: f32| if x.abs() < w { inside } else { c };
                $fast
            }
            LeakyKReLU { leak, k } => {
                let $f = move |x: f32| if x >= 0.0 { k } else { leak };
                $fast
            }
            Rect { alpha } => {
                let half = 0.5 / alpha;
                let $f = move |x: f32| if x.abs() < half { alpha } else { 0.0 };
                $fast
            }
            DeterministicPass => {
                let $f = |_x: f32| 1.0f32;
                $fast
            }
            $s => $slow,
        }
    }};
}

/// `g[i] ← sg'(g[i] + bias) · gs[i]`, with the surrogate resolved once, outside the loop (the
/// generic [`Surrogate::grad`] goes through the `Real` trait, whose cross-crate calls made this
/// loop the slowest part of backward).
fn surrogate_times(sg: Surrogate, g: &mut [f32], bias: f32, gs: &[f32]) {
    #[inline(always)]
    fn run(g: &mut [f32], bias: f32, gs: &[f32], f: impl Fn(f32) -> f32) {
        for (gv, &sv) in g.iter_mut().zip(gs) {
            *gv = f(*gv + bias) * sv;
        }
    }
    with_fast_grad!(sg, |f| run(g, bias, gs, f), |s| run(g, bias, gs, |x| s
        .grad(x)))
}

/// `Σ xs` in `f64`, over 8 independent lanes (vectorisable; the order is fixed, so the result
/// is the same on every run).
fn sum_f64(xs: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v as f64;
        }
    }
    let mut total = lanes.iter().sum::<f64>();
    for &v in tail {
        total += v as f64;
    }
    total
}

/// Per-chunk partial parameter gradients.
struct Partial {
    gw: Vec<f32>,
    gb: Vec<f64>,
}

pub(super) fn backward(
    m: &Mixing,
    x: &[f32],
    n: usize,
    gs: &[f32],
    threads: usize,
    gx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let (rows, cols) = (m.rows, m.cols);
    let nb = block_cols(rows, cols);
    let ch = chunk_cols(rows, cols, n);
    let segs = row_segments(gx, n, ch);
    let chunks = segs.len();
    let partials: Vec<std::sync::Mutex<Option<Partial>>> =
        (0..chunks).map(|_| std::sync::Mutex::new(None)).collect();
    let threads = thread_count(threads, chunks, 3 * rows * cols * n);
    run_chunks(segs, threads, |ci, mut gx_rows| {
        let c0 = ci * ch;
        let width = gx_rows.first().map_or(0, |r| r.len());
        let mut g = vec![0.0f32; rows * nb];
        let mut gxb = vec![0.0f32; cols * nb];
        let mut part = Partial {
            gw: vec![0.0; rows * cols],
            gb: vec![0.0; rows],
        };
        if rows <= SMALL_COLS && cols <= SMALL_COLS {
            small_backward(m, x, n, gs, c0, &mut gx_rows, &mut g, &mut part);
            *partials[ci].lock().unwrap_or_else(|e| e.into_inner()) = Some(part);
            return;
        }
        let mut off = 0;
        while off < width {
            let w = nb.min(width - off);
            let col = c0 + off;
            // H = W·X (recomputed), then gH = sg'(H + b)·gS in place.
            mix_block(m, x, n, col, w, &mut g);
            for r in 0..rows {
                let grow = &mut g[r * w..(r + 1) * w];
                surrogate_times(
                    m.surrogate,
                    grow,
                    m.bias[r],
                    &gs[r * n + col..r * n + col + w],
                );
                part.gb[r] += sum_f64(grow);
            }
            // gX = Wᵀ·gH.
            gemm(
                cols,
                rows,
                w,
                Mat {
                    data: m.weight,
                    rs: 1,
                    cs: cols,
                },
                Mat {
                    data: &g,
                    rs: w,
                    cs: 1,
                },
                0.0,
                &mut gxb,
                w,
            );
            for (j, out) in gx_rows.iter_mut().enumerate() {
                out[off..off + w].copy_from_slice(&gxb[j * w..(j + 1) * w]);
            }
            // gW += gH·Xᵀ.
            gemm(
                rows,
                w,
                cols,
                Mat {
                    data: &g,
                    rs: w,
                    cs: 1,
                },
                Mat {
                    data: &x[col..],
                    rs: 1,
                    cs: n,
                },
                1.0,
                &mut part.gw,
                cols,
            );
            off += w;
        }
        *partials[ci].lock().unwrap_or_else(|e| e.into_inner()) = Some(part);
    });
    // Sum the chunks' partials in chunk order (f64), independent of the thread count.
    let mut gw = vec![0.0f64; rows * cols];
    let mut gb = vec![0.0f64; rows];
    for p in partials {
        let p = p
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .expect("every chunk ran");
        for (a, &v) in gw.iter_mut().zip(&p.gw) {
            *a += v as f64;
        }
        for (a, &v) in gb.iter_mut().zip(&p.gb) {
            *a += v;
        }
    }
    (
        gw.into_iter().map(|v| v as f32).collect(),
        gb.into_iter().map(|v| v as f32).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_surrogate_derivatives_are_bit_identical_to_the_generic_ones() {
        let surrogates = Surrogate::NAMES
            .iter()
            .map(|n| Surrogate::default_for(n).unwrap())
            .chain([
                Surrogate::ATan { alpha: 3.3 },
                Surrogate::Sigmoid { alpha: 1.7 },
                Surrogate::PiecewiseQuadratic { alpha: 0.6 },
                Surrogate::Rect { alpha: 2.5 },
            ]);
        let xs: Vec<f32> = (-4000..=4000)
            .map(|i| i as f32 * 1.37e-3)
            .chain([0.0, -0.0, 1e-30, -1e-30, 1e30, f32::NAN])
            .collect();
        for sg in surrogates {
            let mut g = xs.clone();
            let ones = vec![1.0f32; xs.len()];
            surrogate_times(sg, &mut g, 0.0, &ones);
            for (&x, &got) in xs.iter().zip(&g) {
                let want = sg.grad(x + 0.0);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{sg}: sg'({x}) = {got}, generic {want}"
                );
            }
        }
    }
}
