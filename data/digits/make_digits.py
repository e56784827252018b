"""Writes digits.txt from scikit-learn's bundled copy of the UCI handwritten digits.

Run once in a virtual environment with scikit-learn installed:
    python data/digits/make_digits.py
"""

from pathlib import Path

from sklearn.datasets import load_digits

ALPHABET = "0123456789abcdefg"  # pixel values 0..16, one character each


def main() -> None:
    digits = load_digits()
    lines = []
    for image, label in zip(digits.data.astype(int), digits.target):
        assert image.shape == (64,) and all(0 <= v <= 16 for v in image)
        lines.append(f"{label} " + "".join(ALPHABET[v] for v in image))
    out = Path(__file__).with_name("digits.txt")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} images to {out}")


if __name__ == "__main__":
    main()
