"""The payload codec over HTTP for the Temporal Web UI (/codec/encode, /codec/decode) and its CORS."""
