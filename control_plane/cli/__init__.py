"""The `tollgate` command line: the root in main.py, a module per concern, common.py shared."""
