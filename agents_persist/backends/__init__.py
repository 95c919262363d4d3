"""One module per storage backend; nothing here is imported eagerly so extras stay optional."""
