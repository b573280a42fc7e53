"""The file formats, one module per kind of result, the JSON documents with their schema (``schema``), and
``atomic``: every file is checked before the work and written to a temporary name, then renamed. May import
``output.results``."""
