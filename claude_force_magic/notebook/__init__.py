"""The IPython extension: ``%%agent`` cells, ``%agent`` subcommands, dashboards, the runner.

Modules (each one job):

- :mod:`.magics`  the magics and ``load_ipython_extension`` (thin: parse, validate, call, show)
- :mod:`.commands` the ``%agent`` subcommands, one module per family, registered in one table
- :mod:`.options` ``%%agent`` arguments and ``{name}`` interpolation -> a validated request
- :mod:`.cells`   running a cell's agents concurrently, and ``%agent bench``
- :mod:`.session` the lazily built orchestrators (one factory), the simulator, the metrics
  (one per :class:`~.session.Mode`)
- :mod:`.runner`  one background event-loop thread driven from synchronous magics
- :mod:`.display` streamed answers (safe HTML via :mod:`.render`), the footer, short red errors
- :mod:`.widgets` the ``%agent stats`` dashboard and the bench progress bar
- :mod:`.frames`  pandas DataFrames for the tables (pandas imported lazily)

Importing this package imports nothing but this docstring.
"""
