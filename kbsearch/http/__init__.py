"""The web layer: app factory, JSON API, OpenAPI document, rate limits and the FAQ pages."""
