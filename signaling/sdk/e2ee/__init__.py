"""End-to-end encryption of media through the SFU (docs/e2ee.md): SFrame frames, key blobs, the
key schedule, safety numbers, and the seam that puts them into aiortc."""
