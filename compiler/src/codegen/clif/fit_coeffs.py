"""Fits the polynomial coefficients used by `math.rs` (weighted least squares on Chebyshev
nodes, in 50-digit arithmetic with mpmath; near-minimax). Prints each fit's max relative error in
the transformed variable and the coefficients rounded to f32.

    python3 compiler/src/codegen/clif/fit_coeffs.py
"""
import struct
import mpmath as mp

mp.mp.dps = 50


def f32(x):
    return struct.unpack("f", struct.pack("f", float(x)))[0]


def fit(name, f, lo, hi, deg, npts=400, rel=True):
    xs = [mp.mpf(lo) + (mp.mpf(hi) - lo) * (1 - mp.cos(mp.pi * (k + 0.5) / npts)) / 2 for k in range(npts)]
    ys = [f(x) for x in xs]
    ws = [1 / abs(y) if rel else mp.mpf(1) for y in ys]
    # iteratively reweighted least squares towards minimax (Lawson's algorithm)
    lw = [mp.mpf(1)] * npts
    for it in range(60):
        A = mp.matrix(npts, deg + 1)
        b = mp.matrix(npts, 1)
        for i, x in enumerate(xs):
            s = mp.sqrt(lw[i]) * ws[i]
            for j in range(deg + 1):
                A[i, j] = s * x**j
            b[i] = s * ys[i]
        c = mp.qr_solve(A, b)[0]
        errs = [abs((sum(c[j] * x**j for j in range(deg + 1)) - y) * w) for x, y, w in zip(xs, ys, ws)]
        tot = sum(lw[i] * errs[i] for i in range(npts))
        lw = [lw[i] * errs[i] / tot for i in range(npts)]
    cs = [f32(c[j]) for j in range(deg + 1)]
    err32 = max(abs((sum(mp.mpf(cs[j]) * x**j for j in range(deg + 1)) - y) * w) for x, y, w in zip(xs, ys, ws))
    print(f"{name}: deg {deg}, max rel err {mp.nstr(max(errs), 3)}, with f32 coeffs {mp.nstr(err32, 3)}")
    print("   [" + ", ".join(repr(v) for v in cs) + "]")


# exp: e^r = 1 + r + r^2 q(r), |r| <= ln2/2
fit("exp q", lambda r: (mp.exp(r) - 1 - r) / r**2 if r != 0 else mp.mpf(0.5), -0.3466, 0.3466, 5)
# tanh: tanh(x) = x + x * w * p(w), w = x^2 <= 0.55^2
fit("tanh p", lambda w: (mp.tanh(mp.sqrt(w)) / mp.sqrt(w) - 1) / w if w != 0 else mp.mpf(-1) / 3, 0, 0.3025, 4)
# atan: atan(t) = t + t * w * p(w), w = t^2 <= tan(pi/8)^2
tp8 = mp.tan(mp.pi / 8) ** 2
fit("atan p", lambda w: (mp.atan(mp.sqrt(w)) / mp.sqrt(w) - 1) / w if w != 0 else mp.mpf(-1) / 3, 0, tp8, 4)
# erf, small: erf(x) = x + x * q(w), w = x^2 <= 1 (q is added to 1: absolute error)
fit("erf small q", lambda w: (mp.erf(mp.sqrt(w)) / mp.sqrt(w) if w != 0 else 2 / mp.sqrt(mp.pi)) - 1, 0, 1, 6, rel=False)
# erf, large: erfc(a) = exp(-a^2) * g(u), 1 <= a <= 4, u = 1/a - 0.625
for d in (8, 9):
    fit("erf large g(u)", lambda u: mp.erfc(1 / (u + mp.mpf(0.625))) * mp.exp(1 / (u + mp.mpf(0.625))**2), -0.375, 0.375, d)
