"""Events processed: the Faust app, its agents and tables, and the exporters and API around them."""
