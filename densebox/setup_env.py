"""Importing every densebox module that registers classes (what mmdet keeps in
``mmdet.utils.setup_env``): for building models, datasets or transforms by hand, outside
the Runner. The Runner needs none of it: it imports the ``locations`` of
:mod:`densebox.registry` by itself."""


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every densebox module that registers classes and, unless told not to, make
    ``'densebox'`` the default scope so that mmengine's own builders (e.g. ``BaseModel``'s
    data preprocessor) find them."""
    import densebox.datasets  # noqa: F401
    import densebox.datasets.transforms  # noqa: F401
    import densebox.engine  # noqa: F401
    import densebox.evaluation  # noqa: F401
    import densebox.models  # noqa: F401
    import densebox.visualization  # noqa: F401
    import densebox.zoo  # noqa: F401  the zoo:// checkpoint scheme of the recipes
    if init_default_scope:
        from mmengine.registry import init_default_scope as _init
        _init('densebox')
