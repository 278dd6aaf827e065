"""What editors write: articles, validation, chunking, de/en analysis, Markdown, snippets."""
