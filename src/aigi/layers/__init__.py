"""Reusable pieces shared by several detectors: SVD-residual linear, LoRA, null-space
projection, HSIC, Gumbel mask, wavelet/FFT window attention. Import from the submodules."""
