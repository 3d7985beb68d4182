"""The built-in merge methods, one small module each; importing this package registers them."""

from splice.models.merging.methods import (  # noqa: F401  (imported to register)
    breadcrumbs,
    dare,
    della,
    linear,
    model_stock,
    nuslerp,
    passthrough,
    slerp,
    task_arithmetic,
    ties,
    tsv,
)
