"""What kbsearch keeps: SQLite plumbing, feedback, conversations, callbacks, API keys."""
