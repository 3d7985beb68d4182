"""The built-in merge methods, one small module each; importing this package registers them."""

from splice.models.merging.methods import (  # noqa: F401  (imported to register)
    arcee_fusion,
    breadcrumbs,
    dare,
    della,
    fisher,
    karcher,
    linear,
    model_stock,
    multislerp,
    nearswap,
    nuslerp,
    passthrough,
    r_tsvm,
    ram,
    regmean,
    sce,
    slerp,
    task_arithmetic,
    ties,
    tsv,
)
