"""The language server: JSON-RPC over stdio (pygls), lifecycle, and one module per feature
family. Handlers decode typed params, call into sessions, and encode results; no business
logic lives here.
"""
