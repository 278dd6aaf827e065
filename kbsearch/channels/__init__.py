"""What each caller needs on top of search: the chatbot, agent assist and the FAQ page's votes."""
