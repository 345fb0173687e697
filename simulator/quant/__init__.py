"""4-bit storage of weights: NF4 (QLoRA's NormalFloat) and a uniform int4 grid to compare it with."""
