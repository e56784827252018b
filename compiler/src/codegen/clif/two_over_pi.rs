//! The bits of `2/π` that the argument reduction of `sin`/`cos` needs, as a table shared by the
//! generated code (through its address) and the scalar model of [`super::lanes::Scalar`].

/// The bits of `2/π` after the binary point, most significant first (224 bits).
const TWO_OVER_PI_BITS: [u32; 7] = [
    0xA2F9_836E,
    0x4E44_1529,
    0xFC27_57D1,
    0xF534_DDC0,
    0xDB62_9599,
    0x3C43_9041,
    0xFE51_63AB,
];

/// Bit `p` (1 = first after the binary point) of `2/π`; 0 for `p <= 0`.
const fn two_over_pi_bit(p: i32) -> u64 {
    if p <= 0 {
        return 0;
    }
    let i = (p - 1) as usize;
    ((TWO_OVER_PI_BITS[i / 32] >> (31 - i % 32)) & 1) as u64
}

const fn two_over_pi_chunks() -> [[f64; 4]; 256] {
    let mut t = [[0.0; 4]; 256];
    let mut e = 0;
    while e < 256 {
        // A float with biased exponent e is M * 2^E, E = e - 150, M < 2^24 an integer. Bits of
        // 2/π at positions p <= i0 = E - 2 contribute multiples of 4 to x * 2/π and are dropped.
        let i0 = e as i32 - 152;
        let mut j = 0;
        while j < 4 {
            let mut c = 0u64;
            let mut k = 0;
            while k < 24 {
                c = (c << 1) | two_over_pi_bit(i0 + 1 + 24 * j as i32 + k);
                k += 1;
            }
            t[e][j] = c as f64;
            j += 1;
        }
        e += 1;
    }
    t
}

/// Row `e` holds, for floats with biased exponent `e`, the four consecutive 24-bit chunks of the
/// bits of `2/π` that their argument reduction needs (as exact `f64` integers).
pub static TWO_OVER_PI_CHUNKS: [[f64; 4]; 256] = two_over_pi_chunks();
