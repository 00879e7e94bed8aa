"""Tables (Markdown, CSV) from run directories."""
