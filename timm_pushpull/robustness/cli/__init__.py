"""Command lines of the robustness benchmark, one module per sub-command of ``timm-pushpull``
(``evaluate``, ``compare``), each with ``add_arguments(parser)`` and ``main(args) -> int``.

They turn flags into :class:`~timm_pushpull.robustness.settings.EvalSettings` and data, call the
library, and print or write the report: the library modules never import the report.
"""
