"""The signaling service: REST API, call protocol, authentication and the ``callbook`` CLI."""
