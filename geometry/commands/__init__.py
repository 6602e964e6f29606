"""One module per CLI sub-command; ``_common`` holds the options they share."""
