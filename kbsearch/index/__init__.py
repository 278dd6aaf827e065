"""Built indexes: the embedding model, dense (FAISS) and keyword (Whoosh) retrieval, builds."""
